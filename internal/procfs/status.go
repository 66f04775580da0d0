package procfs

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Status is what ckptfs reads from /proc/<pid>/status.
type Status struct {
	Name      string
	State     byte // R S D T t Z X ...
	Tgid      int
	PPid      int
	TracerPid int
	// NS* list a number per pid namespace level, outermost (the /proc
	// mount's namespace) first. A 0 means the pid has no number at that
	// level: it lives in an ancestor namespace.
	NSpid  []int
	NStgid []int
	NSpgid []int
	NSsid  []int
	Uid    [4]int // real, effective, saved, filesystem
	Gid    [4]int
	Groups []int
	CapInh uint64
	CapPrm uint64
	CapEff uint64
	CapBnd uint64
	CapAmb uint64
	// Seccomp is the task's seccomp mode: 0 none, 1 strict, 2 filter.
	Seccomp    int
	Umask      uint32
	NoNewPrivs bool
	SigPnd     uint64 // signals pending for the task itself
	ShdPnd     uint64 // signals pending for its whole process
	SigIgn     uint64 // signals ignored (bit n-1 for signal n)
	SigCgt     uint64 // signals caught by a handler
	// ShadowStack: the thread runs with an x86 user shadow stack, which
	// rt_sigreturn checks against its own records.
	ShadowStack bool
}

// ReadStatus reads /proc/<pid>/status.
func ReadStatus(pid int) (*Status, error) {
	return readStatus(pidDir(pid) + "/status")
}

// ReadTaskStatus reads /proc/<tgid>/task/<tid>/status: the view of one
// thread, whose NSpid holds the thread's own ids.
func ReadTaskStatus(tgid, tid int) (*Status, error) {
	return readStatus(taskDir(tgid, tid) + "/status")
}

func readStatus(path string) (*Status, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := parseStatus(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func parseStatus(data []byte) (*Status, error) {
	var s Status
	for key, val := range fields(data) {
		var err error
		switch key {
		case "Name":
			s.Name = unescapeName(val)
		case "State":
			if val != "" {
				s.State = val[0]
			}
		case "Tgid":
			s.Tgid, err = strconv.Atoi(val)
		case "PPid":
			s.PPid, err = strconv.Atoi(val)
		case "TracerPid":
			s.TracerPid, err = strconv.Atoi(val)
		case "NSpid":
			s.NSpid, err = parseInts(val)
		case "NStgid":
			s.NStgid, err = parseInts(val)
		case "NSpgid":
			s.NSpgid, err = parseInts(val)
		case "NSsid":
			s.NSsid, err = parseInts(val)
		case "Uid":
			err = parseIDs(val, &s.Uid)
		case "Gid":
			err = parseIDs(val, &s.Gid)
		case "Groups":
			s.Groups, err = parseInts(val)
		case "CapInh":
			s.CapInh, err = strconv.ParseUint(val, 16, 64)
		case "CapBnd":
			s.CapBnd, err = strconv.ParseUint(val, 16, 64)
		case "CapAmb":
			s.CapAmb, err = strconv.ParseUint(val, 16, 64)
		case "CapPrm":
			s.CapPrm, err = strconv.ParseUint(val, 16, 64)
		case "Umask":
			var u uint64
			u, err = strconv.ParseUint(val, 8, 32)
			s.Umask = uint32(u)
		case "NoNewPrivs":
			s.NoNewPrivs = val == "1"
		case "SigPnd":
			s.SigPnd, err = strconv.ParseUint(val, 16, 64)
		case "ShdPnd":
			s.ShdPnd, err = strconv.ParseUint(val, 16, 64)
		case "SigIgn":
			s.SigIgn, err = strconv.ParseUint(val, 16, 64)
		case "SigCgt":
			s.SigCgt, err = strconv.ParseUint(val, 16, 64)
		case "Seccomp":
			s.Seccomp, err = strconv.Atoi(val)
		case "CapEff":
			s.CapEff, err = strconv.ParseUint(val, 16, 64)
		case "x86_Thread_features":
			s.ShadowStack = slices.Contains(strings.Fields(val), "shstk")
		}
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", key, err)
		}
	}
	if len(s.NSpid) == 0 || len(s.NStgid) != len(s.NSpid) ||
		len(s.NSpgid) != len(s.NSpid) || len(s.NSsid) != len(s.NSpid) {
		return nil, fmt.Errorf("missing or inconsistent NSpid/NStgid/NSpgid/NSsid")
	}
	return &s, nil
}

func parseInts(val string) ([]int, error) {
	fields := strings.Fields(val)
	out := make([]int, len(fields))
	for i, f := range fields {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

func parseIDs(val string, ids *[4]int) error {
	n, err := parseInts(val)
	if err != nil {
		return err
	}
	if len(n) != 4 {
		return fmt.Errorf("want 4 ids, have %d", len(n))
	}
	copy(ids[:], n)
	return nil
}

// unescapeName undoes the kernel's escaping of "\n" and "\\" in Name.
func unescapeName(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return strings.NewReplacer(`\n`, "\n", `\\`, `\`).Replace(s)
}
