package plan

import (
	"errors"
	"syscall"
	"testing"
)

// The model's rules, checked against what the kernel does.

func TestModelRules(t *testing.T) {
	m, init := NewModel()
	must := func(p *Task, err error) *Task {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	want := func(err error, e syscall.Errno) {
		t.Helper()
		if e == 0 && err != nil || e != 0 && !errors.Is(err, e) {
			t.Errorf("got %v, want %v", err, e)
		}
	}
	a := must(m.Clone(init, 0, nil, []int32{10}))
	if a.Nr(m.Root) != 10 {
		t.Fatalf("set_tid ignored: %v", a.NSpid())
	}
	_, err := m.Clone(init, 0, nil, []int32{10})
	want(err, syscall.EEXIST)
	_, err = m.Clone(init, CloneParent, nil, nil)
	want(err, syscall.EINVAL) // global init

	// setsid refused to a group leader, even one whose group lives on only
	// in a member.
	b := must(m.Clone(a, 0, nil, nil))
	want(m.Setpgid(a, 0, 0), 0)
	c := must(m.Clone(a, 0, nil, nil)) // in group a
	_ = c
	want(m.Setsid(a), syscall.EPERM)
	want(m.Setsid(b), 0)
	// setpgid: not into a group of another session; not a session leader;
	// not someone else's child.
	want(m.Setpgid(b, 0, a.Nr(m.Root)), syscall.EPERM)
	want(m.Setpgid(b, 0, 0), syscall.EPERM)
	want(m.Setpgid(a, b.Nr(m.Root), 0), syscall.EPERM) // child in another session
	want(m.Setpgid(b, c.Nr(m.Root), 0), syscall.ESRCH)
	want(m.Setpgid(a, c.Nr(m.Root), 0), 0) // parent moves its child

	// Exit: children go to the nearest living subreaper in the namespace.
	want(m.SetSubreaper(a, true), 0)
	d := must(m.Clone(c, 0, nil, nil))
	e := must(m.Clone(d, 0, nil, nil))
	want(m.Exit(d, 0), 0)
	if e.Parent != a {
		t.Errorf("orphan went to %v, want the subreaper", e.Parent)
	}
	_, err = m.Wait(a, d.Nr(m.Root))
	want(err, syscall.ECHILD) // d is c's child
	_, err = m.Wait(c, d.Nr(m.Root))
	want(err, 0)

	// Namespaces: CLONE_NEWPID only from the active namespace; CLONE_PARENT
	// refused to a namespace init; its exit kills the namespace.
	n := must(m.Clone(a, CloneNewPID, nil, []int32{1, 20}))
	if n.Nr(n.NS) != 1 || n.Nr(m.Root) != 20 {
		t.Fatalf("NSpid %v", n.NSpid())
	}
	_, err = m.Clone(n, CloneParent, nil, nil)
	want(err, syscall.EINVAL)
	_, err = m.Clone(a, CloneNewPID, n.NS, nil)
	want(err, syscall.EINVAL)
	_, err = m.Clone(a, 0, n.NS, []int32{1})
	want(err, syscall.EEXIST)
	x := must(m.Clone(a, 0, n.NS, []int32{5})) // setns, then fork
	if x.Parent != a || x.NS != n.NS {
		t.Errorf("setns child: parent %v ns level %d", x.Parent, x.NS.Level)
	}
	y := must(m.Clone(n, 0, nil, nil))
	want(m.Exit(n, 9), 0)
	if x.State != Reaped || y.State != Reaped || n.State != Zombie {
		t.Errorf("namespace not killed: %v %v %v", x.State, y.State, n.State)
	}
	_, err = m.Clone(a, 0, n.NS, nil)
	want(err, syscall.ENOMEM) // the namespace is dead
}
