package image

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes a readable report of the sections s of img (as ReadAny
// returns them): the header's facts, the pid namespaces, every pid object,
// and the task tree drawn like `ps f`, threads in braces under their leader.
//
// A pid is shown by its numbers from the root's namespace down, so
// "812/1/3" is 812 in the root's namespace, 1 a level deeper, 3 below that;
// "anc" is TagAncestor, "root" TagRoot, and "#N" a tag that cannot be
// resolved because the PIDS section is absent. SHARES lists what a process
// shares with its parent (TaskFlags): "files", "fs", "files+fs" or "-".
func WriteText(w io.Writer, img *Image, s Sections) error {
	return (&Report{Image: img, Sections: s}).WriteText(w)
}

// WriteText writes the report WriteText writes for rep's image and, if it
// has per-task detail, a section per task in TREE order, then the tree's
// pipes, sockets and unlinked files with the descriptors that hold them:
//
//	task 812 (server): process, state S, 2 threads
//	  process: cwd /srv, root /, umask 0022, nice 0, oom_score_adj 0
//	  creds: uid 1000, gid 1000, groups 1000
//	    cap eff 0000000000000000
//	  rlimits: NOFILE 1024/524288 (soft/hard; the others default)
//	  sched: SCHED_OTHER, nice 0
//	  regs: rip 0x7f1c2a8e4d7f, rsp 0x7ffd51a1e0b8, in syscall 232 (epoll_wait), rax -4 (EINTR)
//	  signals: blocked -
//	    SIGTERM  0x55d0c0a2b1e0  SA_RESTORER|SA_RESTART  mask -
//	  memory: 31 mappings, 2051 pages (8M) in the image; exe /usr/bin/server, brk 0x55d0c1e3f000
//	    START         END           SIZE  PROT  KIND  PAGES  BYTES  OFFSET  PATH
//	    55d0c0a1b000  55d0c0a3c000  132K  r--p  file  -      -      0       /usr/bin/server
//	  fds: 5
//	    FD  KIND  FLAGS     POS  WHAT
//	    4   pipe  O_RDONLY  0    pipe:[31337]: 12 of 65536 bytes queued; also 813:1 (write)
//
// A thread shows only its own state (registers, signal mask, scheduling,
// and its creds where they differ from its leader's). The memory map
// counts, per mapping, the pages the image holds; resource limits at the
// kernel's defaults are left out.
func (rep *Report) WriteText(w io.Writer) error {
	img, s := rep.Image, rep.Sections
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "sections: %s\n", s)
	if s.Has(SecHeader) {
		h := &img.Header
		fmt.Fprintf(bw, "format version %d, %s, page size %d, %s mode\n",
			h.Version, ArchName(h.Arch), h.PageSize, h.Mode)
		fmt.Fprintf(bw, "kernel %s, taken %s\n", quoteIfOdd(h.Kernel),
			time.Unix(0, h.Time).UTC().Format(time.RFC3339Nano))
		fmt.Fprintf(bw, "xsave: %d bytes, features %#x\n", h.XSaveSize, h.XSaveFeatures)
	}
	tw := tabwriter.NewWriter(bw, 0, 8, 2, ' ', 0)
	if s.Has(SecPids) {
		p := &img.Pids
		fmt.Fprintf(tw, "\npid namespaces: %d\n", len(p.NS))
		fmt.Fprintf(tw, "  TAG\tPARENT\tLEVEL\n")
		levels := nsLevels(p)
		for i, ns := range p.NS {
			parent := "-"
			if ns.Parent != 0 {
				parent = strconv.Itoa(int(ns.Parent))
			}
			fmt.Fprintf(tw, "  %d\t%s\t%d\n", i+1, parent, levels[i+1])
		}
		fmt.Fprintf(tw, "\npids: %d\n", len(p.Pids))
		fmt.Fprintf(tw, "  TAG\tNUMBERS\tNAMESPACES\n")
		for i, pid := range p.Pids {
			ns := make([]string, len(pid.Levels))
			for k, l := range pid.Levels {
				ns[k] = strconv.Itoa(int(l.NS))
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\n", i+1, pidNumbers(pid), strings.Join(ns, "/"))
		}
	}
	if s.Has(SecTree) {
		writeTasks(tw, img, s)
	}
	if rep.Details != nil {
		writeDetails(tw, rep)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

// writeTasks draws the task tree: each process under its parent, each
// thread under its leader, in TREE order among siblings.
func writeTasks(tw *tabwriter.Writer, img *Image, s Sections) {
	tasks := img.Tree.Tasks
	fmt.Fprintf(tw, "\ntasks: %d\n", len(tasks))
	fmt.Fprintf(tw, "  PID\tPPID\tPGID\tSID\tTGID\tSHARES\tSTATE\tCOMM\n")
	ref := func(tag Tag) string { return textRef(img, s, tag) }

	// A validated tree references only earlier tasks, so one pass builds
	// the children lists; a reference that does not resolve (a model built
	// by hand) makes the task a root of its own so nothing is lost.
	index := make(map[Tag]int, len(tasks))
	children := make([][]int, len(tasks))
	var roots []int
	for i, t := range tasks {
		up := t.PPid
		if t.TGid != t.Pid {
			up = t.TGid
		}
		if j, ok := index[up]; ok && i > 0 {
			children[j] = append(children[j], i)
		} else {
			roots = append(roots, i)
		}
		if _, dup := index[t.Pid]; !dup {
			index[t.Pid] = i
		}
	}
	var walk func(i, depth int)
	walk = func(i, depth int) {
		t := tasks[i]
		state, comm := "-", "-"
		if s.Has(SecTasks) && i < len(img.Tasks) {
			ts := &img.Tasks[i]
			state, comm = string(rune(ts.State)), quoteIfOdd(ts.Comm)
			if ts.State == 'Z' {
				comm += fmt.Sprintf(" <defunct, status %#x>", uint32(ts.ExitCode))
			}
		}
		if t.TGid != t.Pid {
			comm = "{" + comm + "}"
		}
		if depth > 0 {
			comm = strings.Repeat("    ", depth-1) + " \\_ " + comm
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			ref(t.Pid), ref(t.PPid), ref(t.PGid), ref(t.Sid), ref(t.TGid), t.Flags, state, comm)
		for _, c := range children[i] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
}

// textRef formats a pid reference of a task.
func textRef(img *Image, s Sections, tag Tag) string {
	switch {
	case tag == TagAncestor:
		return "anc"
	case tag == TagRoot:
		return "root"
	case !s.Has(SecPids) || int(tag) > len(img.Pids.Pids):
		return "#" + strconv.FormatUint(uint64(tag), 10)
	}
	return pidNumbers(img.Pids.Pids[tag-1])
}

// pidNumbers formats a pid's numbers from the root's level down: "812/1/3".
func pidNumbers(p Pid) string {
	var b strings.Builder
	for k, l := range p.Levels {
		if k > 0 {
			b.WriteByte('/')
		}
		b.WriteString(strconv.Itoa(int(l.Nr)))
	}
	return b.String()
}

// nsLevels returns the level of every namespace tag ([0] unused), tolerating
// a model that was not validated (a bad parent counts as level 0).
func nsLevels(p *Pids) []int {
	levels := make([]int, len(p.NS)+1)
	for i, ns := range p.NS {
		if ns.Parent != 0 && int(ns.Parent) <= i {
			levels[i+1] = levels[ns.Parent] + 1
		}
	}
	return levels
}

// quoteIfOdd quotes a string from the image if printing it raw could
// mislead (empty, spaces, control or non-UTF-8 bytes).
func quoteIfOdd(s string) string {
	q := strconv.Quote(s)
	if s == "" || q[1:len(q)-1] != s || strings.ContainsAny(s, " \t") {
		return q
	}
	return s
}
