package image

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Diff is what changed from image A to image B, typically two checkpoints
// of one tree taken at different times: `ckptfs inspect --diff A B`. Its
// field tags are the JSON contract of `inspect --diff --json`. Tasks are
// matched by their pid at the root's level; a task that is the same in
// both is left out, and only what differs is listed. The time an image
// was taken is shown, never counted as a difference.
type Diff struct {
	Identical bool      `json:"identical"`
	A         DiffImage `json:"a"`
	B         DiffImage `json:"b"`
	// Header lists the HEADER facts that differ: "version", "arch",
	// "page_size", "mode", "xsave_size", "xsave_features", "kernel".
	Header []Change `json:"header,omitempty"`
	// Tasks lists the tasks added, removed or changed, by pid.
	Tasks []TaskDiff `json:"tasks,omitempty"`
	// Summary counts the tasks of each kind of change, and the pages of
	// all processes whose contents differ.
	Summary DiffSummary `json:"summary"`
}

// DiffImage describes one of the two images.
type DiffImage struct {
	Name     string `json:"name"`
	Time     int64  `json:"time"` // Unix nanoseconds
	Tasks    int    `json:"tasks"`
	Pages    int64  `json:"pages"` // pages of all processes in the image
	PageSize uint32 `json:"page_size"`
}

// DiffSummary counts what changed.
type DiffSummary struct {
	Added        int   `json:"added"`
	Removed      int   `json:"removed"`
	Changed      int   `json:"changed"`
	PagesChanged int64 `json:"pages_changed"` // in both images, contents differ
	PagesAdded   int64 `json:"pages_added"`   // only in B
	PagesRemoved int64 `json:"pages_removed"` // only in A
}

// Change is one value that differs, as the text report prints it.
type Change struct {
	Field string `json:"field"`
	A     string `json:"a"`
	B     string `json:"b"`
}

// TaskDiff is a task added (only in B), removed (only in A) or changed.
type TaskDiff struct {
	Pid    int32  `json:"pid"`    // at the root's level
	Change string `json:"change"` // "added", "removed", "changed"
	Kind   string `json:"kind"`   // "process" or "thread" (in B, or in A if removed)
	Comm   string `json:"comm"`
	State  string `json:"state"`
	// Fields lists the values that differ, named after the inspect
	// report's keys: "state", "comm", "ppid", "process.cwd",
	// "creds.uid", "rlimits.RLIMIT_NOFILE", "sched.policy",
	// "signals.SIGUSR1", "signals.blocked", "regs.rip", "memory.brk" ...
	Fields []Change `json:"fields,omitempty"`
	// Mappings lists the mappings added, removed, resized, moved or
	// changed, and those whose pages in the image differ, by address.
	Mappings []MappingDiff `json:"mappings,omitempty"`
	// Pages compares the pages of the process in the two images.
	Pages *PagesDiff `json:"pages,omitempty"`
	// FDs lists the descriptors added, removed or changed, by number.
	FDs []FDDiff `json:"fds,omitempty"`
}

// MappingDiff is a mapping that differs. Change is "added", "removed",
// "resized" (same start, another end), "moved" (the same file at the same
// offset, or the same special mapping, at another address), "changed"
// (same range; Fields says what: "prot", "shared", "anon", "path",
// "offset", "dev", "ino", and of the file's identity "size", "mtime",
// "build_id", or "identity" when only one image records it) or "pages"
// (only the pages in the image differ);
// "outside", last and with neither "a" nor "b", counts pages that lie in
// no mapping (none, in images ckptfs wrote). Pages are matched by address,
// so those of a moved mapping count as removed from its old range and
// added to its new one.
type MappingDiff struct {
	Change string      `json:"change"`
	A      *MappingRef `json:"a,omitempty"` // the mapping in A, absent when added
	B      *MappingRef `json:"b,omitempty"` // in B, absent when removed
	Fields []Change    `json:"fields,omitempty"`
	Pages  *PagesDiff  `json:"pages,omitempty"` // absent when neither image holds pages of it
}

// MappingRef names a mapping in a diff.
type MappingRef struct {
	Start Hex    `json:"start"`
	End   Hex    `json:"end"`
	Prot  string `json:"prot"` // "rw-p", as /proc/<pid>/maps
	Kind  string `json:"kind"` // "anon", "file", "heap", "stack", ...
	Path  string `json:"path,omitempty"`
}

// PagesDiff compares the pages two images hold of a mapping (or of a
// whole process): how many each holds, and of those at the same address,
// how many differ in content; Added and Removed count the pages only B or
// only A holds. Bytes are pages times the page size. Checksum says that
// contents were compared by CRC32C of each page, not byte by byte (the
// task came in another order in the two images).
type PagesDiff struct {
	A        int64 `json:"a"`
	B        int64 `json:"b"`
	BytesA   int64 `json:"bytes_a"`
	BytesB   int64 `json:"bytes_b"`
	Changed  int64 `json:"changed"`
	Added    int64 `json:"added"`
	Removed  int64 `json:"removed"`
	Checksum bool  `json:"checksum,omitempty"`
}

func (p *PagesDiff) differs() bool { return p.Changed != 0 || p.Added != 0 || p.Removed != 0 }

// FDDiff is a descriptor added, removed or changed ("changed": Fields says
// what of "kind", "path", "flags", "pos", "queued", and of a regular
// file's identity "size", "mtime", "build_id", or "identity" when only one
// image records it).
type FDDiff struct {
	FD     uint32   `json:"fd"`
	Change string   `json:"change"`
	Kind   string   `json:"kind"`
	Path   string   `json:"path,omitempty"`
	Fields []Change `json:"fields,omitempty"`
}

// DiffImages compares image b with image a, reading both through once,
// together: see "Reading two images for a diff". Both must be whole
// images; an error names the image it comes from (nameA or nameB).
func DiffImages(nameA string, a io.Reader, nameB string, b io.Reader) (*Diff, error) {
	sa, err := openDiffSide(nameA, a)
	if err != nil {
		return nil, err
	}
	sb, err := openDiffSide(nameB, b)
	if err != nil {
		return nil, err
	}
	pages, err := diffRead(sa, sb)
	if err != nil {
		return nil, err
	}
	return buildDiff(sa, sb, pages), nil
}

func diffImage(s *diffSide) DiffImage {
	img := s.rep.Image
	d := DiffImage{Name: s.name, Time: img.Header.Time, Tasks: len(img.Tree.Tasks), PageSize: img.Header.PageSize}
	for i := range s.rep.Details {
		if m := s.rep.Details[i].Memory; m != nil {
			d.Pages += m.Pages
		}
	}
	return d
}

// buildDiff compares the two read images.
func buildDiff(a, b *diffSide, pages map[int]*pageDiff) *Diff {
	d := &Diff{A: diffImage(a), B: diffImage(b)}
	ha, hb := &a.rep.Image.Header, &b.rep.Image.Header
	var hc changes
	hc.add("version", ha.Version, hb.Version)
	hc.add("arch", ArchName(ha.Arch), ArchName(hb.Arch))
	hc.add("page_size", ha.PageSize, hb.PageSize)
	hc.add("mode", ha.Mode, hb.Mode)
	hc.add("xsave_size", ha.XSaveSize, hb.XSaveSize)
	hc.add("xsave_features", Hex(ha.XSaveFeatures), Hex(hb.XSaveFeatures))
	hc.add("kernel", ha.Kernel, hb.Kernel)
	d.Header = hc

	inB := make(map[int32]int, len(b.keys))
	for j, k := range b.keys {
		inB[k] = j
	}
	seen := make(map[int32]bool)
	for i, k := range a.keys {
		j, ok := inB[k]
		if !ok || seen[k] {
			d.Tasks = append(d.Tasks, loneTask(a, i, "removed"))
			continue
		}
		seen[k] = true
		if td := diffTask(a, b, i, j, pages[i]); td != nil {
			d.Tasks = append(d.Tasks, *td)
		}
	}
	for j, k := range b.keys {
		if !seen[k] {
			d.Tasks = append(d.Tasks, loneTask(b, j, "added"))
			seen[k] = true
		}
	}
	slices.SortStableFunc(d.Tasks, func(x, y TaskDiff) int { return cmp.Compare(x.Pid, y.Pid) })
	for _, t := range d.Tasks {
		switch t.Change {
		case "added":
			d.Summary.Added++
		case "removed":
			d.Summary.Removed++
		default:
			d.Summary.Changed++
		}
		if t.Pages != nil {
			d.Summary.PagesChanged += t.Pages.Changed
			d.Summary.PagesAdded += t.Pages.Added
			d.Summary.PagesRemoved += t.Pages.Removed
		}
	}
	d.Identical = len(d.Header) == 0 && len(d.Tasks) == 0
	return d
}

// taskInfo returns a task's kind, comm and state.
func taskInfo(s *diffSide, i int) (kind, comm, state string) {
	img := s.rep.Image
	kind = "process"
	if t := img.Tree.Tasks[i]; t.TGid != t.Pid {
		kind = "thread"
	}
	if i < len(img.Tasks) {
		comm, state = img.Tasks[i].Comm, string(rune(img.Tasks[i].State))
	}
	return kind, comm, state
}

func loneTask(s *diffSide, i int, change string) TaskDiff {
	kind, comm, state := taskInfo(s, i)
	return TaskDiff{Pid: s.keys[i], Change: change, Kind: kind, Comm: comm, State: state}
}

// changes collects the values that differ.
type changes []Change

// add notes field if a and b print differently.
func (c *changes) add(field string, a, b any) {
	as, bs := fmt.Sprint(a), fmt.Sprint(b)
	if as != bs {
		*c = append(*c, Change{Field: field, A: as, B: bs})
	}
}

// addFileID notes what differs of two files' identities: each of size,
// mtime and build-id, or the whole where one image records none (an
// image of format version 2, or a file the checkpoint could not read).
func (c *changes) addFileID(a, b *FileIDDetail) {
	switch {
	case a == nil && b == nil:
	case a == nil || b == nil:
		text := func(id *FileIDDetail) string {
			if id == nil {
				return "-"
			}
			return fileIDText(id)
		}
		c.add("identity", text(a), text(b))
	default:
		c.add("size", a.Size, b.Size)
		c.add("mtime", a.Mtime, b.Mtime)
		c.add("build_id", orDash(a.BuildID), orDash(b.BuildID))
	}
}

// diffTask compares task i of a with its partner j of b; nil if nothing
// differs.
func diffTask(a, b *diffSide, i, j int, pd *pageDiff) *TaskDiff {
	ia, ib := a.rep.Image, b.rep.Image
	ta, tb := ia.Tree.Tasks[i], ib.Tree.Tasks[j]
	kind, comm, state := taskInfo(b, j)
	td := &TaskDiff{Pid: b.keys[j], Change: "changed", Kind: kind, Comm: comm, State: state}
	var c changes
	kindA, commA, stateA := taskInfo(a, i)
	c.add("kind", kindA, kind)
	c.add("state", stateA, state)
	c.add("comm", commA, comm)
	if i < len(ia.Tasks) && j < len(ib.Tasks) {
		c.add("exit_code", fmt.Sprintf("%#x", uint32(ia.Tasks[i].ExitCode)), fmt.Sprintf("%#x", uint32(ib.Tasks[j].ExitCode)))
	}
	ref := func(img *Image, t Tag) string { return textRef(img, SecImage, t) }
	c.add("pid", ref(ia, ta.Pid), ref(ib, tb.Pid))
	c.add("ppid", ref(ia, ta.PPid), ref(ib, tb.PPid))
	c.add("tgid", ref(ia, ta.TGid), ref(ib, tb.TGid))
	c.add("pgid", ref(ia, ta.PGid), ref(ib, tb.PGid))
	c.add("sid", ref(ia, ta.Sid), ref(ib, tb.Sid))
	c.add("shares", ta.Flags, tb.Flags)
	var da, db TaskDetail
	if i < len(a.rep.Details) {
		da = a.rep.Details[i]
	}
	if j < len(b.rep.Details) {
		db = b.rep.Details[j]
	}
	diffDetail(&c, &da, &db)
	td.Fields = c
	td.FDs = diffFDs(da.FDs, db.FDs)
	if pd != nil {
		td.Mappings = pd.mappingDiffs()
		if pd.total.A != 0 || pd.total.B != 0 {
			p := pd.total
			td.Pages = &p
		}
	}
	if len(td.Fields) == 0 && len(td.FDs) == 0 && len(td.Mappings) == 0 && (td.Pages == nil || !td.Pages.differs()) {
		return nil
	}
	return td
}

// diffDetail compares what the per-task records of two tasks hold.
func diffDetail(c *changes, a, b *TaskDetail) {
	if pa, pb := a.Process, b.Process; pa != nil || pb != nil {
		pa, pb = orZero(pa), orZero(pb)
		c.add("process.cwd", pa.Cwd, pb.Cwd)
		c.add("process.root", pa.Root, pb.Root)
		c.add("process.umask", pa.Umask, pb.Umask)
		c.add("process.personality", pa.Personality, pb.Personality)
		c.add("process.nice", pa.Nice, pb.Nice)
		c.add("process.oom_score_adj", pa.OOMScoreAdj, pb.OOMScoreAdj)
		c.add("process.no_new_privs", pa.NoNewPrivs, pb.NoNewPrivs)
		c.add("process.child_subreaper", pa.Subreaper, pb.Subreaper)
	}
	if ca, cb := a.Creds, b.Creds; ca != nil || cb != nil {
		ca, cb = orZero(ca), orZero(cb)
		ids := func(v IDs) string { return fmt.Sprintf("%d/%d/%d/%d", v.Real, v.Effective, v.Saved, v.FS) }
		c.add("creds.uid", ids(ca.Uid), ids(cb.Uid))
		c.add("creds.gid", ids(ca.Gid), ids(cb.Gid))
		c.add("creds.groups", groupsText(ca.Groups), groupsText(cb.Groups))
		c.add("creds.cap_inheritable", ca.CapInheritable, cb.CapInheritable)
		c.add("creds.cap_permitted", ca.CapPermitted, cb.CapPermitted)
		c.add("creds.cap_effective", ca.CapEffective, cb.CapEffective)
		c.add("creds.cap_bounding", ca.CapBounding, cb.CapBounding)
		c.add("creds.cap_ambient", ca.CapAmbient, cb.CapAmbient)
	}
	for k := range max(len(a.RLimits), len(b.RLimits)) {
		la, lb := "-", "-"
		name := RLimitName(k)
		if k < len(a.RLimits) {
			la = a.RLimits[k].Soft.String() + "/" + a.RLimits[k].Hard.String()
		}
		if k < len(b.RLimits) {
			lb = b.RLimits[k].Soft.String() + "/" + b.RLimits[k].Hard.String()
		}
		c.add("rlimits."+name, la, lb)
	}
	if sa, sb := a.Sched, b.Sched; sa != nil || sb != nil {
		sa, sb = orZero(sa), orZero(sb)
		c.add("sched.policy", sa.Policy, sb.Policy)
		c.add("sched.reset_on_fork", sa.ResetOnFork, sb.ResetOnFork)
		c.add("sched.rt_priority", sa.RTPriority, sb.RTPriority)
		c.add("sched.nice", sa.Nice, sb.Nice)
		c.add("sched.pdeathsig", orDash(sa.PDeathSig), orDash(sb.PDeathSig))
	}
	diffSignals(c, orZero(a.Signals), orZero(b.Signals))
	if ra, rb := a.RSeq, b.RSeq; ra != nil || rb != nil {
		c.add("rseq", rseqText(ra), rseqText(rb))
	}
	if ta, tb := a.Thread, b.Thread; ta != nil || tb != nil {
		ta, tb = orZero(ta), orZero(tb)
		c.add("futex.clear_child_tid", ta.ClearChildTid, tb.ClearChildTid)
		c.add("futex.robust_list", ta.RobustList, tb.RobustList)
	}
	if ra, rb := a.Regs, b.Regs; ra != nil || rb != nil {
		ra, rb = orZero(ra), orZero(rb)
		c.add("regs.rip", ra.RIP, rb.RIP)
		c.add("regs.rsp", ra.RSP, rb.RSP)
		c.add("regs.syscall", syscallText(ra.Syscall), syscallText(rb.Syscall))
	}
	if ma, mb := a.Memory, b.Memory; ma != nil || mb != nil {
		ma, mb = orZero(ma), orZero(mb)
		c.add("memory.exe", ma.Exe, mb.Exe)
		for _, f := range []struct {
			name string
			a, b Hex
		}{{"start_code", ma.StartCode, mb.StartCode}, {"end_code", ma.EndCode, mb.EndCode},
			{"start_data", ma.StartData, mb.StartData}, {"end_data", ma.EndData, mb.EndData},
			{"start_brk", ma.StartBrk, mb.StartBrk}, {"brk", ma.Brk, mb.Brk},
			{"start_stack", ma.StartStack, mb.StartStack}, {"arg_start", ma.ArgStart, mb.ArgStart},
			{"arg_end", ma.ArgEnd, mb.ArgEnd}, {"env_start", ma.EnvStart, mb.EnvStart},
			{"env_end", ma.EnvEnd, mb.EnvEnd}} {
			c.add("memory."+f.name, f.a, f.b)
		}
	}
}

// orZero returns *p, or a zero value for a record one image lacks.
func orZero[T any](p *T) *T {
	if p == nil {
		return new(T)
	}
	return p
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func rseqText(r *RSeqDetail) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%d bytes, signature %s)", r.Area, r.Size, r.Signature)
}

func syscallText(s *SyscallDetail) string {
	if s == nil {
		return "-"
	}
	t := strconv.FormatUint(s.Nr, 10)
	if s.Name != "" {
		t += " (" + s.Name + ")"
	}
	return t + " = " + strconv.FormatInt(s.Return, 10)
}

// diffSignals compares signal state. Of the timers only whether one is
// armed, and its interval, count: what is left of a period changes as
// time passes.
func diffSignals(c *changes, a, b *SignalDetail) {
	acts := func(s *SignalDetail) map[uint32]string {
		m := make(map[uint32]string)
		for _, x := range s.Actions {
			m[x.Signo] = fmt.Sprintf("%s %s mask %s", x.Handler, joinFlags(x.Flags), strings.Join(nonEmpty(x.Mask), " "))
		}
		return m
	}
	ma, mb := acts(a), acts(b)
	for sig := uint32(1); sig <= MaxSignals; sig++ {
		xa, ok := ma[sig]
		if !ok {
			xa = "default"
		}
		xb, ok := mb[sig]
		if !ok {
			xb = "default"
		}
		c.add("signals."+SignalName(sig), xa, xb)
	}
	if a.hasMask || b.hasMask {
		c.add("signals.blocked", sigSetText(a.blocked), sigSetText(b.blocked))
	}
	alt := func(s *SignalDetail) string {
		if s.AltStack == nil {
			return "-"
		}
		return fmt.Sprintf("%s (%d bytes)", s.AltStack.SP, s.AltStack.Size)
	}
	c.add("signals.altstack", alt(a), alt(b))
	pend := func(s *SignalDetail) string {
		var p []string
		for _, q := range s.Pending {
			n := q.Name
			if q.Shared {
				n += " (shared)"
			}
			p = append(p, n)
		}
		return strings.Join(nonEmpty(p), ", ")
	}
	c.add("signals.pending", pend(a), pend(b))
	for k := range max(len(a.Timers), len(b.Timers)) {
		ta, tb := "-", "-"
		var which string
		for _, x := range []struct {
			t []TimerDetail
			s *string
		}{{a.Timers, &ta}, {b.Timers, &tb}} {
			if k < len(x.t) {
				which = x.t[k].Which
				*x.s = timerText(x.t[k])
			}
		}
		c.add("timers."+which, ta, tb)
	}
}

func timerText(t TimerDetail) string {
	switch {
	case t.ValueUs == 0 && t.IntervalUs == 0:
		return "disarmed"
	case t.IntervalUs == 0:
		return "armed, once"
	}
	return fmt.Sprintf("armed, every %dus", t.IntervalUs)
}

// diffFDs compares two descriptor tables (sorted by number).
func diffFDs(a, b []FDDetail) []FDDiff {
	var out []FDDiff
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i].FD < b[j].FD:
			out = append(out, FDDiff{FD: a[i].FD, Change: "removed", Kind: a[i].Kind, Path: a[i].Path})
			i++
		case i == len(a) || b[j].FD < a[i].FD:
			out = append(out, FDDiff{FD: b[j].FD, Change: "added", Kind: b[j].Kind, Path: b[j].Path})
			j++
		default:
			fa, fb := &a[i], &b[j]
			var c changes
			c.add("kind", fa.Kind, fb.Kind)
			c.add("path", fa.Path, fb.Path)
			c.add("flags", strings.Join(fa.Flags, "|"), strings.Join(fb.Flags, "|"))
			c.add("pos", fa.Pos, fb.Pos)
			c.add("queued", queuedText(fa), queuedText(fb))
			c.addFileID(fa.Identity, fb.Identity)
			if len(c) > 0 {
				out = append(out, FDDiff{FD: fb.FD, Change: "changed", Kind: fb.Kind, Path: fb.Path, Fields: c})
			}
			i++
			j++
		}
	}
	return out
}

// queuedText is what waits in a descriptor's pipe or socket, "-" for
// other kinds.
func queuedText(f *FDDetail) string {
	switch {
	case f.Pipe != nil:
		return strconv.Itoa(f.Pipe.Queued) + " bytes"
	case f.Socket != nil:
		return fmt.Sprintf("%d bytes in %d messages", f.Socket.Queued, f.Socket.Messages)
	}
	return "-"
}
