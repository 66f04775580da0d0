package image

import (
	"encoding/json"
	"io"
	"strings"
)

// The JSON report's shape. Tests of other packages parse these keys: keep
// them stable.
type (
	jsonReport struct {
		Sections []string    `json:"sections"`
		Header   *jsonHeader `json:"header,omitempty"`
		PidNS    []jsonNS    `json:"pidns,omitempty"`
		Pids     []jsonPid   `json:"pids,omitempty"`
		Tasks    []jsonTask  `json:"tasks,omitempty"`
		// The tree's shared objects, with per-task detail only.
		Pipes   []PipeObject   `json:"pipes,omitempty"`
		Sockets []SocketObject `json:"sockets,omitempty"`
		Files   []FileObject   `json:"files,omitempty"`
	}
	jsonHeader struct {
		Version       uint32 `json:"version"`
		Arch          string `json:"arch"`
		PageSize      uint32 `json:"page_size"`
		Mode          string `json:"mode"`
		XSaveSize     uint32 `json:"xsave_size"`
		XSaveFeatures uint64 `json:"xsave_features"`
		Time          int64  `json:"time"` // Unix nanoseconds
		Kernel        string `json:"kernel"`
	}
	jsonNS struct {
		Tag    Tag `json:"tag"`
		Parent Tag `json:"parent"`
		Level  int `json:"level"`
	}
	jsonPid struct {
		Tag     Tag     `json:"tag"`
		Numbers []int32 `json:"numbers"`
		NS      []Tag   `json:"ns"`
	}
	jsonTask struct {
		Pid      any      `json:"pid"`
		PPid     any      `json:"ppid"`
		TGid     any      `json:"tgid"`
		PGid     any      `json:"pgid"`
		Sid      any      `json:"sid"`
		Depth    uint32   `json:"depth"`
		Shares   []string `json:"shares,omitempty"`
		State    *string  `json:"state,omitempty"`
		ExitCode *int32   `json:"exit_code,omitempty"`
		Comm     *string  `json:"comm,omitempty"`
		// The task's per-task records, when the report has them: their
		// keys ("process", "memory", "fds", "signals", "regs", ...) join
		// the task's own.
		*TaskDetail
	}
	jsonTag struct {
		Tag Tag `json:"tag"`
	}
)

// WriteJSON writes the sections s of img as indented JSON:
//
//	{"sections": ["header", "pids", ...],
//	 "header": {"version", "arch", "page_size", "mode", "xsave_size",
//	            "xsave_features", "time", "kernel"},
//	 "pidns": [{"tag", "parent", "level"}, ...],
//	 "pids":  [{"tag", "numbers": [812, 1], "ns": [1, 2]}, ...],
//	 "tasks": [{"pid", "ppid", "tgid", "pgid", "sid", "depth", "shares",
//	            "state", "exit_code", "comm"}, ...]}
//
// An absent section's key is left out, as are a task's state, exit_code and
// comm without the TASK records. A pid reference is the pid's numbers from
// the root's namespace down ([812, 1]); the root's ppid is null; a pgid or
// sid may be "ancestor" or "root"; without PIDS every reference is
// {"tag": N}. "shares" lists what a process shares with its parent
// ("files", "fs"), and is left out when it shares nothing.
func WriteJSON(w io.Writer, img *Image, s Sections) error {
	return (&Report{Image: img, Sections: s}).WriteJSON(w)
}

// WriteJSON writes the JSON report of WriteJSON for rep's image and, if
// it has per-task detail, adds each task's (TaskDetail: "process",
// "rlimits", "memory", "fds", "signals", "creds", "sched", "rseq",
// "futex", "regs", "unknown_records") to its entry of "tasks", and the
// tree's shared objects at the top:
//
//	"pipes":   [{"ino", "size", "queued", "held_by": [{"pid", "fd", "access"}]}],
//	"sockets": [{"ino", "peer", "type", "shutdown", "sndbuf", "rcvbuf",
//	             "peek_off", "messages", "queued", "held_by"}],
//	"files":   [{"dev", "ino", "name", "memfd", "mode", "uid", "gid",
//	             "seals", "size", "carried", "held_by"}]
//
// For example, the bytes queued in the pipes of process 812:
//
//	jq '.tasks[] | select(.pid == [812]) | .fds[] | select(.pipe) | {fd, queued: .pipe.queued}'
func (rep *Report) WriteJSON(w io.Writer) error {
	img, s := rep.Image, rep.Sections
	out := jsonReport{Sections: strings.Split(s.String(), "+")}
	if s == 0 {
		out.Sections = []string{}
	}
	if s.Has(SecHeader) {
		h := &img.Header
		out.Header = &jsonHeader{
			Version: h.Version, Arch: ArchName(h.Arch), PageSize: h.PageSize, Mode: h.Mode.String(),
			XSaveSize: h.XSaveSize, XSaveFeatures: h.XSaveFeatures, Time: h.Time, Kernel: h.Kernel,
		}
	}
	if s.Has(SecPids) {
		levels := nsLevels(&img.Pids)
		out.PidNS = make([]jsonNS, len(img.Pids.NS))
		for i, ns := range img.Pids.NS {
			out.PidNS[i] = jsonNS{Tag: Tag(i + 1), Parent: ns.Parent, Level: levels[i+1]}
		}
		out.Pids = make([]jsonPid, len(img.Pids.Pids))
		for i, p := range img.Pids.Pids {
			jp := jsonPid{Tag: Tag(i + 1), Numbers: make([]int32, len(p.Levels)), NS: make([]Tag, len(p.Levels))}
			for k, l := range p.Levels {
				jp.Numbers[k], jp.NS[k] = l.Nr, l.NS
			}
			out.Pids[i] = jp
		}
	}
	if s.Has(SecTree) {
		ref := func(tag Tag) any {
			switch {
			case tag == TagAncestor:
				return "ancestor"
			case tag == TagRoot:
				return "root"
			case !s.Has(SecPids) || int(tag) > len(img.Pids.Pids):
				return jsonTag{tag}
			}
			return out.Pids[tag-1].Numbers
		}
		out.Tasks = make([]jsonTask, len(img.Tree.Tasks))
		for i, t := range img.Tree.Tasks {
			jt := jsonTask{Pid: ref(t.Pid), PPid: ref(t.PPid), TGid: ref(t.TGid),
				PGid: ref(t.PGid), Sid: ref(t.Sid), Depth: t.Depth, Shares: t.Flags.Names()}
			if t.PPid == TagAncestor {
				jt.PPid = nil // the root's parent is outside the tree
			}
			if s.Has(SecTasks) && i < len(img.Tasks) {
				ts := img.Tasks[i]
				state := string(rune(ts.State))
				jt.State, jt.ExitCode, jt.Comm = &state, &ts.ExitCode, &ts.Comm
			}
			if i < len(rep.Details) {
				jt.TaskDetail = &rep.Details[i]
			}
			out.Tasks[i] = jt
		}
	}
	out.Pipes, out.Sockets, out.Files = rep.Pipes, rep.Sockets, rep.Files
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
