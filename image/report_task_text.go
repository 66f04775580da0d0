package image

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// writeDetails writes the per-task part of the text report: a header line
// per task in TREE order, its state in indented sections, the memory map
// and the descriptors as aligned columns; then the pipes, sockets and
// unlinked files of the tree. w is a tabwriter: a line without tabs ends
// a table, so each task's tables align on their own.
func writeDetails(w io.Writer, rep *Report) {
	img := rep.Image
	threads := make(map[Tag]int)
	for _, t := range img.Tree.Tasks {
		if t.TGid != t.Pid {
			threads[t.TGid]++
		}
	}
	leaders := make(map[Tag]*TaskDetail) // to compare a thread's creds with its leader's
	for i := range rep.Details {
		if i >= len(img.Tasks) || i >= len(img.Tree.Tasks) {
			break
		}
		t, ts, d := img.Tree.Tasks[i], &img.Tasks[i], &rep.Details[i]
		fmt.Fprintf(w, "\ntask %s (%s): ", textRef(img, rep.Sections, t.Pid), quoteIfOdd(ts.Comm))
		if t.TGid != t.Pid {
			fmt.Fprintf(w, "thread of %s, state %c", textRef(img, rep.Sections, t.TGid), ts.State)
		} else {
			fmt.Fprintf(w, "process, state %c", ts.State)
			if n := threads[t.Pid]; n > 0 {
				fmt.Fprintf(w, ", %d thread%s", n, plural(n))
			}
			leaders[t.Pid] = d
		}
		if ts.State == 'Z' {
			fmt.Fprintf(w, ", exit status %#x", uint32(ts.ExitCode))
		}
		fmt.Fprintln(w)
		writeTaskDetail(w, d, leaders[t.TGid], t.TGid == t.Pid)
	}
	writeObjects(w, rep)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// writeTaskDetail writes one task's sections. A thread's creds are shown
// only where they differ from its leader's.
func writeTaskDetail(w io.Writer, d, leader *TaskDetail, isLeader bool) {
	if p := d.Process; p != nil {
		fmt.Fprintf(w, "  process: cwd %s, root %s, umask %s, nice %d, oom_score_adj %d",
			quoteIfOdd(p.Cwd), quoteIfOdd(p.Root), p.Umask, p.Nice, p.OOMScoreAdj)
		if p.Personality != 0 {
			fmt.Fprintf(w, ", personality %s", p.Personality)
		}
		if p.NoNewPrivs {
			fmt.Fprint(w, ", no_new_privs")
		}
		if p.Subreaper {
			fmt.Fprint(w, ", child subreaper")
		}
		fmt.Fprintln(w)
	}
	if c := d.Creds; c != nil && (isLeader || leader == nil || leader.Creds == nil || !sameCreds(c, leader.Creds)) {
		writeCreds(w, c)
	}
	if d.RLimits != nil {
		writeRLimits(w, d.RLimits)
	}
	if s := d.Sched; s != nil {
		fmt.Fprintf(w, "  sched: %s", s.Policy)
		if s.RTPriority != 0 {
			fmt.Fprintf(w, " priority %d", s.RTPriority)
		}
		if s.ResetOnFork {
			fmt.Fprint(w, " reset-on-fork")
		}
		fmt.Fprintf(w, ", nice %d", s.Nice)
		if s.PDeathSig != "" {
			fmt.Fprintf(w, ", pdeathsig %s", s.PDeathSig)
		}
		fmt.Fprintln(w)
	}
	if r := d.Regs; r != nil {
		fmt.Fprintf(w, "  regs: rip %s, rsp %s", r.RIP, r.RSP)
		if sc := r.Syscall; sc != nil {
			fmt.Fprintf(w, ", in syscall %d", sc.Nr)
			if sc.Name != "" {
				fmt.Fprintf(w, " (%s)", sc.Name)
			}
			fmt.Fprintf(w, ", rax %d", sc.Return)
			if sc.Errno != "" {
				fmt.Fprintf(w, " (%s)", sc.Errno)
			}
		} else {
			fmt.Fprint(w, ", not in a syscall")
		}
		fmt.Fprintln(w)
	}
	if d.RSeq != nil || d.Thread != nil {
		var parts []string
		if r := d.RSeq; r != nil {
			parts = append(parts, fmt.Sprintf("rseq %s (%d bytes, signature %s)", r.Area, r.Size, r.Signature))
		}
		if t := d.Thread; t != nil {
			parts = append(parts, "clear_child_tid "+t.ClearChildTid.String())
			if t.RobustList != 0 {
				parts = append(parts, fmt.Sprintf("robust list %s (%d bytes)", t.RobustList, t.RobustListLen))
			}
		}
		fmt.Fprintf(w, "  thread: %s\n", strings.Join(parts, ", "))
	}
	if s := d.Signals; s != nil {
		writeSignals(w, s)
	}
	if m := d.Memory; m != nil {
		writeMemory(w, m)
	}
	if d.FDs != nil {
		writeFDs(w, d.FDs)
	}
	for _, u := range d.Unknown {
		fmt.Fprintf(w, "  record %d: %d bytes, unknown to this version (skipped)\n", u.Type, u.Bytes)
	}
}

func sameCreds(a, b *CredsDetail) bool {
	return a.Uid == b.Uid && a.Gid == b.Gid && fmt.Sprint(a.Groups) == fmt.Sprint(b.Groups) &&
		a.CapInheritable == b.CapInheritable && a.CapPermitted == b.CapPermitted &&
		a.CapEffective == b.CapEffective && a.CapBounding == b.CapBounding && a.CapAmbient == b.CapAmbient
}

// idsText is "1000" when the four ids agree, else real/effective/saved/fs.
func idsText(v IDs) string {
	if v.Real == v.Effective && v.Real == v.Saved && v.Real == v.FS {
		return strconv.FormatUint(uint64(v.Real), 10)
	}
	return fmt.Sprintf("%d/%d/%d/%d", v.Real, v.Effective, v.Saved, v.FS)
}

func groupsText(g []uint32) string {
	if len(g) == 0 {
		return "-"
	}
	s := make([]string, len(g))
	for i, v := range g {
		s[i] = strconv.FormatUint(uint64(v), 10)
	}
	return strings.Join(s, ",")
}

func writeCreds(w io.Writer, c *CredsDetail) {
	fmt.Fprintf(w, "  creds: uid %s, gid %s, groups %s\n", idsText(c.Uid), idsText(c.Gid), groupsText(c.Groups))
	fmt.Fprintf(w, "    cap eff %s\n", capSetText(uint64(c.CapEffective)))
	if c.CapPermitted != c.CapEffective {
		fmt.Fprintf(w, "    cap prm %s\n", capSetText(uint64(c.CapPermitted)))
	}
	fmt.Fprintf(w, "    cap inh %016x, bnd %016x, amb %016x\n",
		uint64(c.CapInheritable), uint64(c.CapBounding), uint64(c.CapAmbient))
}

func writeRLimits(w io.Writer, l []RLimitDetail) {
	var parts []string
	for _, r := range l {
		if !r.Default {
			parts = append(parts, fmt.Sprintf("%s %s/%s", strings.TrimPrefix(r.Resource, "RLIMIT_"), r.Soft, r.Hard))
		}
	}
	switch {
	case len(parts) == 0:
		fmt.Fprint(w, "  rlimits: the kernel's defaults\n")
	default:
		fmt.Fprintf(w, "  rlimits: %s (soft/hard; the others default)\n", strings.Join(parts, ", "))
	}
}

func writeSignals(w io.Writer, s *SignalDetail) {
	var parts []string
	if s.hasMask {
		parts = append(parts, "blocked "+sigSetText(s.blocked))
	}
	if a := s.AltStack; a != nil {
		alt := fmt.Sprintf("altstack %s (%d bytes)", a.SP, a.Size)
		if len(a.Flags) > 0 {
			alt += " " + joinFlags(a.Flags)
		}
		parts = append(parts, alt)
	}
	if len(s.Pending) > 0 {
		var p []string
		for _, q := range s.Pending {
			txt := q.Name + " (" + q.Code
			if q.Shared {
				txt += ", shared"
			}
			if q.SenderPid != nil {
				txt += fmt.Sprintf(", from pid %d uid %d", *q.SenderPid, *q.SenderUid)
			}
			p = append(p, txt+")")
		}
		parts = append(parts, "pending "+strings.Join(p, ", "))
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "  signals: %s\n", strings.Join(parts, "; "))
	}
	if len(s.Actions) > 0 {
		if len(parts) == 0 {
			fmt.Fprint(w, "  signals:\n")
		}
		for _, a := range s.Actions {
			fmt.Fprintf(w, "    %s\t%s\t%s\tmask %s\n", a.Name, a.Handler, joinFlags(a.Flags), strings.Join(nonEmpty(a.Mask), " "))
		}
	}
	var timers []string
	for _, t := range s.Timers {
		if t.ValueUs != 0 || t.IntervalUs != 0 {
			txt := fmt.Sprintf("%s in %dus", t.Which, t.ValueUs)
			if t.IntervalUs != 0 {
				txt += fmt.Sprintf(" every %dus", t.IntervalUs)
			}
			timers = append(timers, txt)
		}
	}
	if len(timers) > 0 {
		fmt.Fprintf(w, "  timers: %s\n", strings.Join(timers, ", "))
	}
}

// nonEmpty puts "-" in an empty list.
func nonEmpty(l []string) []string {
	if len(l) == 0 {
		return []string{"-"}
	}
	return l
}

func writeMemory(w io.Writer, m *MemoryDetail) {
	fmt.Fprintf(w, "  memory: %d mapping%s, %d page%s (%s) in the image", len(m.Mappings), plural(len(m.Mappings)),
		m.Pages, plural(int(m.Pages)), sizeText(uint64(m.Bytes)))
	if m.PagesOutside > 0 {
		fmt.Fprintf(w, ", %d of them outside every mapping", m.PagesOutside)
	}
	fmt.Fprintf(w, "; exe %s, brk %s\n", quoteIfOdd(m.Exe), m.Brk)
	if len(m.Mappings) == 0 {
		return
	}
	fmt.Fprint(w, "    START\tEND\tSIZE\tPROT\tKIND\tPAGES\tBYTES\tOFFSET\tPATH\n")
	for _, v := range m.Mappings {
		// Every row has a PATH ("-" for none): a row that ended at OFFSET
		// would end that column's block for tabwriter, misaligning the
		// rows below it.
		fmt.Fprintf(w, "    %x\t%x\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", uint64(v.Start), uint64(v.End), sizeText(v.Size),
			mapProt(&v), mappingKind(&v), countText(v.Pages), countSize(v.Bytes), offsetText(&v), pathText(v.Path))
	}
	writeMappedFiles(w, m.Mappings)
}

// writeMappedFiles lists the identity of each mapped file once (a library
// backs several mappings), in the order of the map. The line before the
// table has no tab, so that it aligns on its own.
func writeMappedFiles(w io.Writer, maps []MappingDetail) {
	type file struct {
		path, dev string
		ino       uint64
		id        FileIDDetail
	}
	seen := make(map[file]bool)
	var files []file
	for _, v := range maps {
		if v.Identity == nil {
			continue
		}
		f := file{v.Path, v.Dev, v.Ino, *v.Identity}
		if !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return
	}
	fmt.Fprint(w, "    mapped files, as restart checks them:\n")
	fmt.Fprint(w, "      SIZE\tMTIME\tBUILD-ID\tDEV\tINO\tPATH\n")
	for _, f := range files {
		fmt.Fprintf(w, "      %d\t%s\t%s\t%s\t%d\t%s\n", f.id.Size, f.id.Mtime, orDash(f.id.BuildID), f.dev, f.ino, pathText(f.path))
	}
}

// fileIDText says what identifies a file: "size 4096, mtime ...,
// build-id ..." (no build-id for a file that is no ELF file or has none).
func fileIDText(id *FileIDDetail) string {
	s := fmt.Sprintf("size %d, mtime %s", id.Size, id.Mtime)
	if id.BuildID != "" {
		s += ", build-id " + id.BuildID
	}
	return s
}

// mapProt is the protection and sharing as /proc/<pid>/maps shows them:
// "rw-p".
func mapProt(v *MappingDetail) string {
	if v.Shared {
		return v.Prot + "s"
	}
	return v.Prot + "p"
}

// pathText is a mapping's path, "-" for an anonymous one.
func pathText(p string) string {
	if p == "" {
		return "-"
	}
	return quoteIfOdd(p)
}

func mappingKind(v *MappingDetail) string {
	switch {
	case v.Special != "":
		return v.Special
	case v.Anon:
		return "anon"
	}
	return "file"
}

func offsetText(v *MappingDetail) string {
	if v.Anon {
		return "-"
	}
	return strconv.FormatUint(v.Offset, 10)
}

func countText(n int64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

func countSize(n int64) string {
	if n == 0 {
		return "-"
	}
	return sizeText(uint64(n))
}

func writeFDs(w io.Writer, fds []FDDetail) {
	fmt.Fprintf(w, "  fds: %d\n", len(fds))
	if len(fds) == 0 {
		return
	}
	fmt.Fprint(w, "    FD\tKIND\tFLAGS\tPOS\tWHAT\n")
	for i := range fds {
		f := &fds[i]
		fmt.Fprintf(w, "    %d\t%s\t%s\t%d\t%s\n", f.FD, f.Kind, strings.Join(f.Flags, "|"), f.Pos, fdWhat(f))
	}
}

// fdWhat says what a descriptor is open on, and what it shares.
func fdWhat(f *FDDetail) string {
	s := quoteIfOdd(f.Path)
	switch {
	case f.Pipe != nil:
		p := f.Pipe
		if f.Kind == "fifo" {
			s += fmt.Sprintf(", pipe %d", p.Ino)
		}
		s += fmt.Sprintf(": %d of %d bytes queued", p.Queued, p.Size)
	case f.Socket != nil:
		k := f.Socket
		s += fmt.Sprintf(": %s, %d bytes in %d message%s queued, peer %d", k.Type, k.Queued, k.Messages, plural(k.Messages), k.Peer)
		if len(f.PeerHeldBy) > 0 {
			s += " held by " + holdersText(f.PeerHeldBy)
		}
		if k.Shutdown != "" {
			s += ", shut down for " + k.Shutdown
		}
	case f.File != nil:
		k := f.File
		if k.Memfd {
			s += fmt.Sprintf(": memfd %s", quoteIfOdd(k.Name))
		} else {
			s += ":"
		}
		s += fmt.Sprintf(" %d bytes, mode %s", k.Size, k.Mode)
		if len(k.Seals) > 0 {
			s += ", seals " + joinFlags(k.Seals)
		}
	case f.Eventfd != nil:
		s += fmt.Sprintf(": count %d", f.Eventfd.Count)
		if f.Eventfd.Semaphore {
			s += ", semaphore"
		}
	case f.Kind == "epoll":
		var watches []string
		for _, e := range f.Epoll {
			watches = append(watches, fmt.Sprintf("%d %s", e.FD, joinFlags(e.Events)))
		}
		s += ": watches " + strings.Join(nonEmpty(watches), ", ")
	case f.Identity != nil:
		s += ": " + fileIDText(f.Identity)
	case f.Replaced != nil:
		switch r := f.Replaced; {
		case r.Was == "terminal" && r.Foreground:
			s += ": a terminal (in the foreground), /dev/null at restore or the restorer's with --shell-job"
		case r.Was == "terminal":
			s += ": a terminal, /dev/null at restore or the restorer's with --shell-job"
		case r.Was != "":
			s += fmt.Sprintf(": a %s leading outside the tree, /dev/null at restore", r.Was)
		default:
			s += ": /dev/null at restore"
		}
	}
	if len(f.SharedWith) > 0 {
		s += "; also " + holdersText(f.SharedWith)
	}
	return s
}

func holdersText(hs []Holder) string {
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = holderText(h) + " (" + h.Access + ")"
	}
	return strings.Join(s, ", ")
}

// writeObjects lists the shared objects of the tree and who holds them.
func writeObjects(w io.Writer, rep *Report) {
	if len(rep.Pipes) > 0 {
		fmt.Fprintf(w, "\npipes: %d\n  INO\tSIZE\tQUEUED\tHELD BY\n", len(rep.Pipes))
		for _, p := range rep.Pipes {
			fmt.Fprintf(w, "  %d\t%d\t%d\t%s\n", p.Ino, p.Size, p.Queued, holdersOrNone(p.HeldBy))
		}
	}
	if len(rep.Sockets) > 0 {
		fmt.Fprintf(w, "\nsockets: %d\n  INO\tPEER\tTYPE\tMESSAGES\tQUEUED\tHELD BY\n", len(rep.Sockets))
		for _, s := range rep.Sockets {
			fmt.Fprintf(w, "  %d\t%d\t%s\t%d\t%d\t%s\n", s.Ino, s.Peer, s.Type, s.Messages, s.Queued, holdersOrNone(s.HeldBy))
		}
	}
	if len(rep.Files) > 0 {
		fmt.Fprintf(w, "\nunlinked files: %d\n  DEV\tINO\tSIZE\tMODE\tNAME\tHELD BY\n", len(rep.Files))
		for _, f := range rep.Files {
			name := quoteIfOdd(f.Name)
			if f.Memfd {
				name = "memfd " + name
			}
			fmt.Fprintf(w, "  %s\t%d\t%d\t%s\t%s\t%s\n", f.Dev, f.Ino, f.Size, f.Mode, name, holdersOrNone(f.HeldBy))
		}
	}
}

func holdersOrNone(hs []Holder) string {
	if len(hs) == 0 {
		return "-"
	}
	return holdersText(hs)
}
