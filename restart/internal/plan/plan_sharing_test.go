package plan

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/image"
)

// flagsOf returns the TREE flags of process p of the world's forest f.
func flagsOf(t *testing.T, w *world, f Forest, p *Task) image.TaskFlags {
	t.Helper()
	nr := p.Nr(w.root.NS)
	for _, task := range f.Tree.Tasks {
		if f.Pids.Pids[task.Pid-1].Levels[0].Nr == nr {
			return task.Flags
		}
	}
	t.Fatalf("%s is not in the forest", p)
	return 0
}

// wantSteps checks that the plan's text holds every line fragment.
func wantSteps(t *testing.T, p *Plan, want ...string) {
	t.Helper()
	text := p.String()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("plan lacks %q:\n%s", w, text)
		}
	}
}

func name(p *Task) string { return joinNrs(p.NSpid()[1:]) }

func TestPlanSharingWithParent(t *testing.T) {
	w := newContainerWorld(t)
	a := w.clone(w.root, CloneFiles|CloneFS)
	b := w.clone(a, CloneFiles)
	c := w.fork(w.root)
	w.fork(c)
	f := w.forest()
	for _, x := range []struct {
		p    *Task
		want image.TaskFlags
	}{{a, image.TaskSharesFiles | image.TaskSharesFS}, {b, image.TaskSharesFiles}, {c, 0}} {
		if got := flagsOf(t, w, f, x.p); got != x.want {
			t.Errorf("%s: flags %s, want %s", x.p, got, x.want)
		}
	}
	p := checkForest(t, f)
	wantSteps(t, p,
		"task 1 creates task "+name(a)+" with CLONE_FS|CLONE_FILES",
		"task "+name(a)+" creates task "+name(b)+" with CLONE_FILES in",
		"task 1 creates task "+name(c)+" in")
}

// A child sharing its parent's fs struct, forked before the parent left
// for a session of its own, is created before that setsid.
func TestPlanSharingEarly(t *testing.T) {
	w := newContainerWorld(t)
	a := w.fork(w.root)
	b := w.clone(a, CloneFS)
	w.setsid(a)
	w.clone(a, CloneFiles|CloneFS)
	p := w.check()
	wantSteps(t, p, "task "+name(a)+" creates task "+name(b)+" with CLONE_FS in")
}

// A sibling made with CLONE_PARENT|CLONE_FILES by a process sharing its
// parent's table shares that table too; it lives in its creator's
// session, so only the creator (or its ghost once it is gone) can make
// it.
func TestPlanSharingHandedOn(t *testing.T) {
	for _, gone := range []bool{false, true} {
		w := newContainerWorld(t)
		m := w.clone(w.root, CloneFiles)
		w.setsid(m)
		x := w.clone(m, CloneParent|CloneFiles)
		if gone {
			w.exitReaped(m)
		}
		f := w.forest()
		if got := flagsOf(t, w, f, x); got != image.TaskSharesFiles {
			t.Errorf("flags of %s: %s, want files", x, got)
		}
		p := checkForest(t, f)
		who := "task " + name(m)
		if gone {
			who = "ghost " + name(m)
			wantSteps(t, p, "task 1 creates "+who+" with CLONE_FILES in")
		}
		wantSteps(t, p, who+" creates task "+name(x)+" with CLONE_FILES|CLONE_PARENT")
	}
}

func TestPlanSharingRefused(t *testing.T) {
	// The dead leader of x's session is a zombie: the plan creates it as
	// the task it is, holding its own table, and nothing else in that
	// session holds x's parent's.
	w := newContainerWorld(t)
	m := w.clone(w.root, CloneFiles)
	w.setsid(m)
	x := w.clone(m, CloneParent|CloneFiles)
	w.exit(m, 0)
	p, err := Make(w.forest())
	if err == nil {
		t.Fatalf("accepted:\n%v", p)
	}
	for _, want := range []string{"task " + name(x), "shares its parent's descriptor table"} {
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not wrap ErrRefused or say %q", err, want)
		}
	}

	// Malformed flags.
	tree := func(flags ...image.TaskFlags) Forest {
		f := Forest{Mode: image.ModeContainer, Pids: pids1(1, 2, 3), Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: 1, Sid: 1},
			{Pid: 2, PPid: 1, TGid: 2, PGid: 1, Sid: 1},
			{Pid: 3, PPid: 1, TGid: 2, PGid: 1, Sid: 1}, // a thread of 2
		}}}
		for i, fl := range flags {
			f.Tree.Tasks[i].Flags = fl
		}
		return f
	}
	zombie := tree(0, image.TaskSharesFS)
	zombie.Tree.Tasks = zombie.Tree.Tasks[:2]
	zombie.Zombies = map[image.Tag]int32{2: 0}
	for _, c := range []struct {
		name string
		f    Forest
		want string
	}{
		{"root", tree(image.TaskSharesFiles), "task 0 (pid 1): the root task carries flags files, but its parent is outside the tree"},
		{"thread", tree(0, 0, image.TaskSharesFS), "task 2 (pid 3): a thread carries flags fs: it shares everything with its leader"},
		{"unknown", tree(0, 1<<5), "unknown flags 0x20"},
		{"zombie", zombie, "zombie 2: a zombie holds no fs struct"},
	} {
		p, err := Make(c.f)
		if err == nil {
			t.Errorf("%s: accepted:\n%v", c.name, p)
			continue
		}
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrRefused saying %q", c.name, err, c.want)
		}
	}
}

// Sharing no parent explains is what a checkpoint refuses: the model's
// snapshot does too.
func TestSnapshotRefusesSharing(t *testing.T) {
	w := newContainerWorld(t)
	a := w.fork(w.root)
	w.clone(a, CloneParent|CloneFS) // shares a's, a child of the root
	if _, err := Snapshot(w.root, w.mode); err == nil || !strings.Contains(err.Error(), "which is neither its parent") {
		t.Errorf("sibling sharing: %v", err)
	}

	h, err := NewHost(image.ModeSubtree, OuterHidden)
	if err != nil {
		t.Fatal(err)
	}
	root, err := h.Model.Clone(h.Restorer, CloneFiles, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Snapshot(root, image.ModeSubtree); err == nil || !strings.Contains(err.Error(), "the root shares its descriptor table") {
		t.Errorf("root sharing with its parent: %v", err)
	}
}

func TestRestoredLater(t *testing.T) {
	const files, fs = image.TaskSharesFiles, image.TaskSharesFS
	tree := image.Tree{Tasks: []image.Task{
		{Pid: 1, TGid: 1},
		{Pid: 2, PPid: 1, TGid: 2, Flags: files | fs},
		{Pid: 3, PPid: 1, TGid: 2}, // a thread of 2
		{Pid: 4, PPid: 2, TGid: 4, Flags: files},
		{Pid: 5, PPid: 1, TGid: 5},
		{Pid: 6, PPid: 5, TGid: 6, Flags: fs},
		{Pid: 7, PPid: 1, TGid: 7, Flags: fs},
	}}
	got := restoredLater(&tree)
	want := map[image.Tag]image.TaskFlags{1: files | fs, 2: files | fs, 5: fs}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restoredLater %v, want %v", got, want)
	}
}
