package plan

import (
	"testing"

	"github.com/ckptfs/ckptfs/image"
)

// world scripts an original forest on the model: a host, a root, and
// whatever the test does to them. check() then checkpoints it (Snapshot),
// plans, executes and compares.
type world struct {
	t    testing.TB
	h    *Host
	m    *Model
	root *Task
	mode image.Mode
}

func newContainerWorld(t testing.TB) *world {
	h, err := NewHost(image.ModeContainer, OuterHidden)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, h: h, m: h.Model, mode: image.ModeContainer}
	w.root = w.clone(h.Restorer, CloneNewPID)
	return w
}

// newSubtreeWorld: the restorer-like parent of the subtree is a subreaper;
// outer says whether it also leads its group, or its group and session, in
// the root's namespace (TagRoot); else they are the host's (TagAncestor).
func newSubtreeWorld(t testing.TB, outer Outer) *world {
	h, err := NewHost(image.ModeSubtree, outer)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, h: h, m: h.Model, mode: image.ModeSubtree}
	w.root = w.clone(h.Restorer, 0)
	return w
}

func (w *world) clone(p *Task, flags CloneFlags) *Task {
	w.t.Helper()
	c, err := w.m.Clone(p, flags, nil, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

func (w *world) fork(p *Task) *Task   { w.t.Helper(); return w.clone(p, 0) }
func (w *world) newpid(p *Task) *Task { w.t.Helper(); return w.clone(p, CloneNewPID) }
func (w *world) thread(p *Task) *Task { w.t.Helper(); return w.clone(p, CloneThread) }

func (w *world) setsid(p *Task) {
	w.t.Helper()
	if err := w.m.Setsid(p); err != nil {
		w.t.Fatal(err)
	}
}

// setpgid: target joins the group led by (or named after) g; g == target
// creates its own group. Done by target itself.
func (w *world) setpgid(target, g *Task) {
	w.t.Helper()
	if err := w.m.Setpgid(target, 0, g.Nr(target.NS)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) exit(p *Task, status int32) {
	w.t.Helper()
	if err := w.m.Exit(p, status); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) exitReaped(p *Task) {
	w.t.Helper()
	parent := p.Parent
	w.exit(p, 0)
	if _, err := w.m.Wait(parent, p.Nr(parent.NS)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) forest() Forest {
	w.t.Helper()
	f, err := Snapshot(w.root, w.mode)
	if err != nil {
		w.t.Fatal(err)
	}
	return f
}

// check plans the world's forest, executes the plan on a fresh model and
// compares. It returns the plan.
func (w *world) check() *Plan {
	w.t.Helper()
	return checkForest(w.t, w.forest())
}

func checkForest(t testing.TB, f Forest) *Plan {
	t.Helper()
	p, err := Make(f)
	if err != nil {
		t.Fatalf("Make: %v\nforest:\n%v", err, f)
	}
	out, err := Execute(p)
	if err != nil {
		t.Fatalf("Execute: %v\nforest:\n%v\n%v", err, f, p)
	}
	if err := SameForest(f, out); err != nil {
		t.Fatalf("%v\nforest:\n%v\n%v", err, f, p)
	}
	return p
}
