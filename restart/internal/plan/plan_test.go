package plan

import (
	"strings"
	"testing"
)

// Hand-written forests, each scripted on the model as a real tree would be
// made, checkpointed, planned, executed and compared.

func TestPlanSetsidChildWithChildren(t *testing.T) {
	w := newContainerWorld(t)
	w.setsid(w.root)
	a := w.fork(w.root)
	w.setsid(a)
	b := w.fork(a)
	w.fork(b)
	w.fork(w.root)
	w.check()
}

func TestPlanForkedBeforeSetsid(t *testing.T) {
	w := newContainerWorld(t)
	w.setsid(w.root)
	a := w.fork(w.root)
	b := w.fork(a) // keeps the root's session
	w.fork(b)
	w.setsid(a)
	w.fork(a) // in a's session
	p := w.check()
	// a must create b before its setsid.
	text := p.String()
	ib := strings.Index(text, "creates task "+joinNrs(b.NSpid()[1:]))
	is := strings.Index(text, "task "+joinNrs(a.NSpid()[1:])+" calls setsid")
	if ib < 0 || is < 0 || ib > is {
		t.Errorf("b is not created before a's setsid:\n%s", text)
	}
}

func TestPlanGroupLeaderExited(t *testing.T) {
	w := newContainerWorld(t)
	w.setsid(w.root)
	a := w.fork(w.root)
	w.setpgid(a, a)
	w.fork(a) // in group a
	c := w.fork(w.root)
	w.setpgid(c, a)
	w.exitReaped(a) // its child goes to the root; group a lives on
	p := w.check()
	if !strings.Contains(p.String(), "dead group leader") {
		t.Errorf("no ghost:\n%v", p)
	}
}

func TestPlanSessionLeaderExited(t *testing.T) {
	w := newContainerWorld(t)
	w.setsid(w.root)
	s := w.fork(w.root)
	w.setsid(s)
	m1 := w.fork(s)
	m2 := w.fork(m1)
	w.fork(m2)
	m3 := w.fork(s)
	w.setpgid(m3, m3)
	w.exitReaped(s)  // m1, m3 go to the root (init)
	w.exitReaped(m1) // m2 too
	p := w.check()
	if !strings.Contains(p.String(), "dead session leader") {
		t.Errorf("no ghost:\n%v", p)
	}
}

func TestPlanOrphansToSubreaper(t *testing.T) {
	w := newSubtreeWorld(t, OuterSession)
	w.root.Subreaper = true
	a := w.fork(w.root)
	b := w.fork(a)
	w.setsid(b)
	c := w.fork(b)
	w.fork(c)
	d := w.fork(a) // stays in the root's session
	w.exitReaped(a)
	w.exitReaped(b) // c goes to the root: its session's leader is a ghost
	_ = d
	p := w.check()
	if !strings.Contains(p.String(), "subreaper") && !strings.Contains(p.String(), "CLONE_PARENT") {
		t.Errorf("expected a move:\n%v", p)
	}
}

func TestPlanZombies(t *testing.T) {
	w := newContainerWorld(t)
	w.setsid(w.root)
	a := w.fork(w.root)
	w.exit(a, 3<<8) // unreaped
	s := w.fork(w.root)
	w.setsid(s)
	m := w.fork(s)
	w.fork(m)
	w.exit(s, 9) // killed, unreaped, still leads its session
	b := w.fork(w.root)
	z := w.fork(b)
	w.exit(z, 0)
	w.check()
}

func TestPlanThreads(t *testing.T) {
	w := newContainerWorld(t)
	w.thread(w.root)
	a := w.fork(w.root)
	w.thread(a)
	w.thread(a)
	w.setsid(a)
	b := w.fork(a)
	w.setpgid(b, b)
	w.thread(b)
	w.check()
}

func TestPlanNamespaces(t *testing.T) {
	w := newContainerWorld(t)
	w.setsid(w.root)
	n2a := w.newpid(w.root)
	n2b := w.newpid(w.root)
	w.setsid(n2b)
	x := w.fork(n2a)
	n3 := w.newpid(x)
	y := w.fork(n3)
	w.setsid(y)
	w.fork(y)
	z := w.fork(n2b)
	w.fork(z)
	w.newpid(n2b)
	// an init that inherited a group it cannot see, then its parent moved
	q := w.fork(w.root)
	w.newpid(q)
	w.setpgid(q, q)
	w.check()
}

func TestPlanGroupAcrossSiblings(t *testing.T) {
	w := newContainerWorld(t)
	w.setsid(w.root)
	a := w.fork(w.root)
	b := w.fork(w.root)
	c := w.fork(b)
	w.setpgid(a, a)
	w.setpgid(b, a)
	w.setpgid(c, a)
	w.check()
}

func TestPlanGroupOfNestedInit(t *testing.T) {
	w := newContainerWorld(t)
	w.setsid(w.root)
	i := w.newpid(w.root)
	w.setpgid(i, i) // a group named by a pid of a deeper namespace
	b := w.fork(w.root)
	w.setpgid(b, i)
	w.exitReaped(i) // alone in its namespace: the group needs a ghost init
	w.check()
}

func TestPlanLeaderLeftItsGroup(t *testing.T) {
	w := newContainerWorld(t)
	w.setsid(w.root)
	a := w.fork(w.root)
	w.setpgid(a, a)
	w.fork(a)
	w.setpgid(a, w.root)
	w.check()
}

func TestPlanSubtreeTagRoot(t *testing.T) {
	w := newSubtreeWorld(t, OuterSession)
	a := w.fork(w.root)
	w.setpgid(w.root, w.root)
	w.fork(a)
	b := w.fork(w.root)
	w.setsid(b)
	w.fork(b)
	f := w.forest()
	if !strings.Contains(f.String(), "root's") {
		t.Fatalf("no TagRoot:\n%v", f)
	}
	checkForest(t, f)
}

// The group from above is visible in the root's namespace but its session
// is not: a shell without job control that made its own group, in a pid
// namespace whose session leader lives outside (as under some CI runners).
func TestPlanSubtreeVisibleGroupHiddenSession(t *testing.T) {
	w := newSubtreeWorld(t, OuterGroup)
	a := w.fork(w.root)
	w.fork(a)
	b := w.fork(w.root)
	w.setpgid(b, b)
	w.fork(b)
	f := w.forest()
	s := f.String()
	if !strings.Contains(s, "root's") || !strings.Contains(s, "ancestor") {
		t.Fatalf("want TagRoot groups and a TagAncestor session:\n%v", f)
	}
	checkForest(t, f)
}

func TestPlanSubtreeTagAncestor(t *testing.T) {
	w := newSubtreeWorld(t, OuterHidden)
	a := w.fork(w.root)
	w.fork(a)
	w.setsid(w.root)
	w.fork(w.root)
	f := w.forest()
	if !strings.Contains(f.String(), "ancestor") {
		t.Fatalf("no TagAncestor:\n%v", f)
	}
	checkForest(t, f)
}

func TestPlanContainerInheritedSession(t *testing.T) {
	w := newContainerWorld(t)
	a := w.fork(w.root)
	w.newpid(a) // inherits an invisible group and session
	w.setsid(a)
	w.fork(a)
	w.check()
}
