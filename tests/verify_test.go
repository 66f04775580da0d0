package tests

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// verifyImage compares every number of a decoded image of the subtree
// rooted at tt.root with what /proc says, and the header's mode with want.
//
// Pid lists in the report run from the root task's namespace down, so they
// are compared with the NS* lists of /proc/<pid>/status from the root's
// level L on (the test's namespace is level 0).
func verifyImage(t reporter, what string, rep *report, tt *treeTruth, wantMode string) {
	t.Helper()
	v := &verifier{t: t, what: what, rep: rep, tt: tt, mode: wantMode}
	v.run()
}

// reporter is the part of *testing.T the verifier uses, so that a test can
// check that the verifier itself catches mistakes.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

type verifier struct {
	t    reporter
	what string
	rep  *report
	tt   *treeTruth
	mode string

	L        int            // the root's level below the test's namespace
	rootTr   *truth         // the root process
	byRootNr map[int]*truth // tasks by their number in the root's namespace
	nerr     int
}

func (v *verifier) errorf(format string, args ...any) {
	v.t.Helper()
	v.nerr++
	if v.nerr == 30 {
		v.t.Errorf("%s: too many errors; stopping", v.what)
	}
	if v.nerr >= 30 {
		return
	}
	v.t.Errorf("%s: %s", v.what, fmt.Sprintf(format, args...))
}

func (v *verifier) run() {
	t, rep := v.t, v.rep
	t.Helper()
	if !rep.hasSections("header", "pids", "tree", "tasks", "tail") {
		v.errorf("sections %v, want a whole image", rep.Sections)
	}
	if rep.Header == nil {
		v.errorf("no header")
	} else {
		v.checkHeader()
	}

	v.rootTr = v.tt.byTid[v.tt.root]
	v.L = v.rootTr.level()
	v.byRootNr = map[int]*truth{}
	for _, tr := range v.tt.tasks {
		v.byRootNr[tr.NSpid[v.L]] = tr
	}

	v.checkNamespaces()
	got := v.checkTaskSet()
	for i, task := range rep.Tasks {
		if tr := got[i]; tr != nil {
			v.checkTask(i, task, tr)
		}
	}
	v.checkPidObjects()
	if v.nerr > 0 {
		t.Logf("%s: image holds %s", v.what, rep.describe())
	}
}

// checkHeader checks the header's facts against this machine.
func (v *verifier) checkHeader() {
	h := v.rep.Header
	if h.Mode != v.mode {
		v.errorf("mode %q, want %q", h.Mode, v.mode)
	}
	if h.Version < 1 {
		v.errorf("format version %d", h.Version)
	}
	if runtime.GOARCH == "amd64" && h.Arch != "x86_64" {
		v.errorf("arch %q, want x86_64", h.Arch)
	}
	if h.PageSize != os.Getpagesize() {
		v.errorf("page size %d, this machine's is %d", h.PageSize, os.Getpagesize())
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		if rel := unix.ByteSliceToString(uts.Release[:]); h.Kernel != rel {
			v.errorf("kernel %q, this machine runs %q", h.Kernel, rel)
		}
	}
	// Images are checked right after they are taken.
	if at := time.Unix(0, h.Time); time.Since(at) > 10*time.Minute || time.Until(at) > time.Minute {
		v.errorf("checkpoint time %v is not about now (%v)", at, time.Now())
	}
}

// fromRoot cuts a /proc NS list down to the levels at and below the root's.
func (v *verifier) fromRoot(l []int) []int {
	if len(l) <= v.L {
		return nil
	}
	return l[v.L:]
}

// checkTaskSet matches the image's tasks with the subtree's tasks, threads
// included, and returns the truth of each image task (nil if unmatched).
func (v *verifier) checkTaskSet() []*truth {
	rep := v.rep
	out := make([]*truth, len(rep.Tasks))
	seen := map[int]bool{}
	for i, task := range rep.Tasks {
		if len(task.Pid.Numbers) == 0 {
			v.errorf("task %d: pid %s is not a list of numbers", i, task.Pid)
			continue
		}
		nr := task.Pid.Numbers[0]
		tr := v.byRootNr[nr]
		if tr == nil {
			v.errorf("task %d: pid %v is not a task of the subtree of %d", i, task.Pid.Numbers, v.tt.root)
			continue
		}
		if seen[nr] {
			v.errorf("task %d: pid %v appears twice", i, task.Pid.Numbers)
			continue
		}
		seen[nr] = true
		out[i] = tr
	}
	for _, tr := range v.tt.tasks {
		if !seen[tr.NSpid[v.L]] {
			v.errorf("task %d/%d (%s, NSpid %v) of the subtree is missing from the image", tr.Tgid, tr.Tid, tr.Comm, tr.NSpid)
		}
	}
	if len(rep.Tasks) > 0 && out[0] != v.rootTr {
		v.errorf("task 0 is %v, want the root %d", rep.Tasks[0].Pid, v.tt.root)
	}
	return out
}

// checkTask compares one task of the image with /proc.
func (v *verifier) checkTask(i int, task reportTask, tr *truth) {
	v.t.Helper()
	who := fmt.Sprintf("task %d (%d/%d %s)", i, tr.Tgid, tr.Tid, tr.Comm)

	if want := v.fromRoot(tr.NSpid); !slices.Equal(task.Pid.Numbers, want) {
		v.errorf("%s: pid %v, /proc NSpid from the root's level %v", who, task.Pid.Numbers, want)
	}
	if want := tr.level() - v.L; task.Depth != want {
		v.errorf("%s: depth %d, want %d", who, task.Depth, want)
	}
	if want := v.fromRoot(tr.NStgid); !slices.Equal(task.TGid.Numbers, want) {
		v.errorf("%s: tgid %s, /proc NStgid from the root's level %v", who, task.TGid, want)
	}

	// The parent: outside the tree for the root process and its threads.
	if tr.Tgid == v.tt.root {
		if !task.PPid.Null {
			v.errorf("%s: ppid %s, want null for the root's thread group", who, task.PPid)
		}
	} else {
		parent := v.tt.byTid[tr.PPid]
		switch {
		case parent == nil:
			v.errorf("%s: its parent %d (PPid) is not in the subtree", who, tr.PPid)
		case !slices.Equal(task.PPid.Numbers, v.fromRoot(parent.NSpid)):
			v.errorf("%s: ppid %s, the parent %d has NSpid %v from the root's level", who, task.PPid, tr.PPid, v.fromRoot(parent.NSpid))
		case v.L == 0 && task.PPid.Numbers[0] != tr.PPid:
			v.errorf("%s: ppid[0] %d, /proc PPid %d", who, task.PPid.Numbers[0], tr.PPid)
		}
	}

	v.checkGroup(who, "pgid", task.PGid, tr.NSpgid, v.rootTr.NSpgid)
	v.checkGroup(who, "sid", task.Sid, tr.NSsid, v.rootTr.NSsid)

	switch {
	case task.State == nil || task.Comm == nil || task.ExitCode == nil:
		v.errorf("%s: state, comm or exit_code missing", who)
	default:
		if *task.State != string(rune(tr.State)) {
			v.errorf("%s: state %q, /proc says %c", who, *task.State, tr.State)
		}
		if *task.Comm != tr.Comm {
			v.errorf("%s: comm %q, /proc says %q", who, *task.Comm, tr.Comm)
		}
		if *task.ExitCode != tr.ExitCode {
			v.errorf("%s: exit_code %d, /proc stat says %d", who, *task.ExitCode, tr.ExitCode)
		}
	}
}

// checkGroup checks a pgid or sid reference against /proc's list procList
// (the task's NSpgid or NSsid) and the root's (rootList):
//   - a group not visible in the root's namespace (0 there) must be
//     "ancestor" ("root" is only for one the root's namespace can name);
//   - a group led by a task of the subtree must be the leader's numbers;
//   - a group from outside the tree that is the root's must be "root";
//   - any other (a group whose leader is dead) must be a list that agrees
//     with /proc wherever both have a number, with 0s in /proc below
//     the group's own depth.
func (v *verifier) checkGroup(who, name string, got ref, procList, rootList []int) {
	v.t.Helper()
	want := v.fromRoot(procList)
	nr := want[0]
	leader := v.byRootNr[nr]
	if leader != nil && leader.Tid != leader.Tgid {
		leader = nil // a thread's tid is never a group id
	}
	container := v.mode == "container"
	switch {
	case nr == 0:
		switch {
		case container:
			v.errorf("%s: %s %s: /proc says it is outside the container (%v)", who, name, got, procList)
		case got.Word == "ancestor":
		default:
			v.errorf("%s: %s %s, but it is not visible in the root's namespace (/proc %v): want \"ancestor\"", who, name, got, procList)
		}
	case leader != nil:
		if lw := v.fromRoot(leader.NSpid); !slices.Equal(got.Numbers, lw) {
			v.errorf("%s: %s %s, its leader %d (%s) has pid %v", who, name, got, leader.Tid, leader.Comm, lw)
		}
	case nr == v.fromRoot(rootList)[0]:
		if container {
			v.errorf("%s: %s %v is led from outside the container", who, name, want)
		} else if got.Word != "root" {
			v.errorf("%s: %s %s: the root's, from above the tree (/proc %v): want \"root\"", who, name, got, procList)
		}
	default:
		if len(got.Numbers) == 0 {
			v.errorf("%s: %s %s, want the numbers of the (dead) leader %v", who, name, got, want)
			return
		}
		for k := range max(len(got.Numbers), len(want)) {
			switch {
			case k < len(got.Numbers) && k < len(want):
				if got.Numbers[k] != want[k] {
					v.errorf("%s: %s %v, /proc %v from the root's level", who, name, got.Numbers, want)
					return
				}
			case k < len(want):
				if want[k] != 0 {
					v.errorf("%s: %s %v ends above level %d, where /proc has %d (%v)", who, name, got.Numbers, k, want[k], want)
					return
				}
			}
		}
	}
}

// checkNamespaces checks the pidns table and maps its tags onto the real
// namespaces: the tag of the innermost level of each task's pid must name
// that task's namespace (one tag per namespace), and each tag's parent must
// be the real parent namespace.
func (v *verifier) checkNamespaces() {
	rep := v.rep
	nsParent := map[int]int{}
	level := map[int]int{}
	for i, ns := range rep.PidNS {
		switch {
		case ns.Tag != i+1:
			v.errorf("pidns[%d] has tag %d, want %d", i, ns.Tag, i+1)
		case i == 0 && (ns.Parent != 0 || ns.Level != 0):
			v.errorf("pidns tag 1 has parent %d level %d, want 0 and 0", ns.Parent, ns.Level)
		case i > 0 && (ns.Parent < 1 || ns.Parent > i):
			v.errorf("pidns tag %d has parent %d, not an earlier tag", ns.Tag, ns.Parent)
		case i > 0 && ns.Level != level[ns.Parent]+1:
			v.errorf("pidns tag %d has level %d, its parent %d has %d", ns.Tag, ns.Level, ns.Parent, level[ns.Parent])
		}
		nsParent[ns.Tag], level[ns.Tag] = ns.Parent, ns.Level
	}

	pidNS := map[string][]int{} // pid numbers → ns tags
	for _, p := range rep.Pids {
		key := fmt.Sprint(p.Numbers)
		if len(p.NS) != len(p.Numbers) || len(p.Numbers) == 0 {
			v.errorf("pid tag %d: %d numbers, %d namespaces", p.Tag, len(p.Numbers), len(p.NS))
			continue
		}
		for k, ns := range p.NS {
			if _, ok := level[ns]; !ok {
				v.errorf("pid tag %d: namespace tag %d is not in pidns", p.Tag, ns)
			} else if level[ns] != k || (k > 0 && nsParent[ns] != p.NS[k-1]) {
				v.errorf("pid tag %d: namespaces %v do not follow the pidns chain", p.Tag, p.NS)
			}
		}
		pidNS[key] = p.NS
	}

	tagIno := map[int]uint64{}
	inoTag := map[uint64]int{}
	tagTask := map[int]*truth{} // a live task in each namespace
	for _, task := range rep.Tasks {
		tr := v.byRootNr[firstOr0(task.Pid.Numbers)]
		ns := pidNS[fmt.Sprint(task.Pid.Numbers)]
		if tr == nil || tr.PidNS == 0 || len(ns) == 0 {
			continue // unmatched (reported elsewhere) or a zombie
		}
		tag := ns[len(ns)-1]
		if ino, ok := tagIno[tag]; ok && ino != tr.PidNS {
			v.errorf("namespace tag %d names two namespaces (%d and %d, of task %d)", tag, ino, tr.PidNS, tr.Tid)
			continue
		}
		if other, ok := inoTag[tr.PidNS]; ok && other != tag {
			v.errorf("namespace %d has two tags, %d and %d (task %d)", tr.PidNS, other, tag, tr.Tid)
			continue
		}
		tagIno[tag], inoTag[tr.PidNS] = tr.PidNS, tag
		tagTask[tag] = tr
	}
	if ino := v.rootTr.PidNS; ino != 0 && tagIno[1] != ino {
		v.errorf("namespace tag 1 is %d, the root's namespace is %d", tagIno[1], ino)
	}
	for tag, tr := range tagTask {
		if tag == 1 {
			continue
		}
		pino, err := parentNS(tr.Tgid, tr.Tid)
		if err != nil {
			v.errorf("parent namespace of task %d: %v", tr.Tid, err)
			continue
		}
		if want, ok := tagIno[nsParent[tag]]; ok && want != pino {
			v.errorf("namespace tag %d's parent is tag %d (namespace %d), the kernel says %d", tag, nsParent[tag], want, pino)
		}
	}
	for _, ns := range rep.PidNS {
		if _, ok := tagIno[ns.Tag]; !ok {
			v.errorf("namespace tag %d holds no task of the tree", ns.Tag)
		}
	}
}

// checkPidObjects checks that every pid object is referenced by a task and
// that the numbers of pid objects are unique per namespace.
func (v *verifier) checkPidObjects() {
	used := map[string]bool{}
	for _, task := range v.rep.Tasks {
		for _, r := range []ref{task.Pid, task.PPid, task.TGid, task.PGid, task.Sid} {
			if len(r.Numbers) > 0 {
				used[fmt.Sprint(r.Numbers)] = true
			}
		}
	}
	type nsNr struct{ ns, nr int }
	seen := map[nsNr]int{}
	for _, p := range v.rep.Pids {
		if !used[fmt.Sprint(p.Numbers)] {
			v.errorf("pid tag %d %v is referenced by no task", p.Tag, p.Numbers)
		}
		for k := range min(len(p.Numbers), len(p.NS)) {
			key := nsNr{p.NS[k], p.Numbers[k]}
			if other, dup := seen[key]; dup {
				v.errorf("pid tags %d and %d both have number %d in namespace %d", other, p.Tag, key.nr, key.ns)
			}
			seen[key] = p.Tag
		}
	}
}

func firstOr0(l []int) int {
	if len(l) == 0 {
		return 0
	}
	return l[0]
}

// verifySectionFiles checks the standalone pids and tree files against the
// image they came from (same snapshot): the pids file decodes to the same
// namespaces and pid objects, and the tree file to the same tasks with
// {"tag": N} references that name the image's pid objects.
func verifySectionFiles(t *testing.T, what string, img, pids, tree *report) {
	t.Helper()
	if !pids.hasSections("pids") || pids.Header != nil || len(pids.Tasks) != 0 {
		t.Errorf("%s: the pids file decodes to sections %v (header %v, %d tasks), want pids only",
			what, pids.Sections, pids.Header != nil, len(pids.Tasks))
	}
	if d := sameTasks(&report{PidNS: img.PidNS, Pids: img.Pids}, &report{PidNS: pids.PidNS, Pids: pids.Pids}); d != "" {
		t.Errorf("%s: the pids file differs from the image's PIDS:\n%s", what, d)
	}
	if !tree.hasSections("tree") || tree.Header != nil || len(tree.Pids) != 0 {
		t.Errorf("%s: the tree file decodes to sections %v, want tree only", what, tree.Sections)
	}
	if len(tree.Tasks) != len(img.Tasks) {
		t.Errorf("%s: the tree file has %d tasks, the image %d", what, len(tree.Tasks), len(img.Tasks))
		return
	}
	numbers := func(r ref) string {
		switch {
		case r.IsTag && r.Tag >= 1 && r.Tag <= len(img.Pids):
			return fmt.Sprint(img.Pids[r.Tag-1].Numbers)
		case r.IsTag:
			return fmt.Sprintf("undefined tag %d", r.Tag)
		}
		return r.String()
	}
	for i, tt := range tree.Tasks {
		it := img.Tasks[i]
		pairs := []struct {
			name   string
			tr, ir ref
		}{{"pid", tt.Pid, it.Pid}, {"ppid", tt.PPid, it.PPid}, {"tgid", tt.TGid, it.TGid}, {"pgid", tt.PGid, it.PGid}, {"sid", tt.Sid, it.Sid}}
		for _, p := range pairs {
			if p.tr.Word == "" && !p.tr.Null && !p.tr.IsTag {
				t.Errorf("%s: tree file task %d: %s %s is neither a {tag} nor a special value", what, i, p.name, p.tr)
				continue
			}
			if g, w := numbers(p.tr), p.ir.String(); g != w {
				t.Errorf("%s: tree file task %d: %s %s resolves to %s, the image says %s", what, i, p.name, p.tr, g, w)
			}
		}
		if tt.Depth != it.Depth {
			t.Errorf("%s: tree file task %d: depth %d, the image says %d", what, i, tt.Depth, it.Depth)
		}
	}
}
