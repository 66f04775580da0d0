package plan

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestPlanRandom grows random forests on the model by the system calls a
// real tree uses (fork, clone with CLONE_NEWPID or CLONE_PARENT, clone
// sharing the descriptor table or fs struct, threads, setsid, setpgid, exit
// with or without reaping, child subreapers), then checkpoints, plans,
// executes and compares each one. Sharing a checkpoint refuses (no parent
// explains it) is skipped, and so is sharing that only a dead session
// leader could hand on, which Make refuses.
//
// The generator avoids one thing: a namespace init never exits while its
// namespace holds another task, since the kernel would kill them all, and
// pids of a dead namespace still used as a group or session would need a
// namespace with no init to be recreated, which clone3 cannot do.
func TestPlanRandom(t *testing.T) {
	seeds := 2000
	if testing.Short() {
		seeds = 300
	}
	var sharing, unshareable, refused, tested int
	var byParent, byPlaceholder int // sharing handed on by another creator
	for seed := 0; tested < seeds; seed++ {
		var log strings.Builder
		w := randomWorld(t, uint64(seed), &log)
		f, err := Snapshot(w.root, w.mode)
		if err != nil {
			// A checkpoint refuses sharing that no parent explains.
			if !strings.Contains(err.Error(), "which is neither its parent nor sharing it through its parent") {
				t.Fatalf("seed %d: %v\nops:\n%s", seed, err, log.String())
			}
			unshareable++
			continue
		}
		shares := false
		for _, task := range f.Tree.Tasks {
			shares = shares || task.Flags != 0
		}
		p, err := Make(f)
		if err != nil && shares && errors.Is(err, ErrRefused) && strings.Contains(err.Error(), "so only a process holding that can create it") {
			// Shared with its parent, but only a ghost of its session
			// could create it (see TestPlanSharingRefused).
			refused++
			continue
		}
		if err == nil {
			var out Forest
			if out, err = Execute(p); err == nil {
				err = SameForest(f, out)
			}
		}
		if err != nil {
			t.Fatalf("seed %d: %v\nops:\n%s\nforest:\n%v", seed, err, log.String(), f)
		}
		tested++
		if !shares {
			continue
		}
		sharing++
		for _, st := range p.Steps {
			if c, ok := st.(Clone); ok && c.Flags&(CloneFiles|CloneFS) != 0 {
				switch {
				case c.Flags&CloneParent != 0:
					byParent++
				case p.Procs[c.Actor].Kind == KindPlaceholder:
					byPlaceholder++
				}
			}
		}
	}
	t.Logf("%d of %d forests share tables or fs structs (%d handed on with CLONE_PARENT, %d through placeholders); checkpoint would refuse %d more, Make refused %d",
		sharing, seeds, byParent, byPlaceholder, unshareable, refused)
	if sharing < seeds/10 {
		t.Errorf("only %d forests with sharing were rebuilt", sharing)
	}
}

func randomWorld(t testing.TB, seed uint64, log *strings.Builder) *world {
	r := rand.New(rand.NewPCG(seed, 0x636b707466730a))
	var w *world
	switch r.IntN(3) {
	case 0:
		w = newSubtreeWorld(t, Outer(r.IntN(3)))
		if r.IntN(2) == 0 {
			w.root.Subreaper = true // so orphans stay in the tree
		}
	default:
		w = newContainerWorld(t)
	}
	m := w.m
	fmt.Fprintf(log, "%s mode\n", w.mode)
	statuses := []int32{0, 1 << 8, 2 << 8, 9, 15, 0x86}
	shares := []CloneFlags{CloneFiles, CloneFS, CloneFiles | CloneFS}
	nops := 5 + r.IntN(40)
	for range nops {
		live := w.live()
		p := live[r.IntN(len(live))]
		op := r.IntN(100)
		var err error
		var what string
		switch {
		case op < 22:
			_, err = m.Clone(p, 0, nil, nil)
			what = "fork"
		case op < 28:
			flags := shares[r.IntN(len(shares))]
			_, err = m.Clone(p, flags, nil, nil)
			what = "clone " + flags.String()
		case op < 34:
			if p.NS.Level < 4 {
				flags := CloneNewPID
				if r.IntN(2) == 0 {
					flags |= shares[r.IntN(len(shares))]
				}
				_, err = m.Clone(p, flags, nil, nil)
				what = "clone " + flags.String()
			}
		case op < 39:
			_, err = m.Clone(p, CloneThread, nil, nil)
			what = "thread"
		case op < 44:
			if p != w.root {
				_, err = m.Clone(p, CloneParent, nil, nil)
				what = "clone PARENT"
			}
		case op < 54:
			err = m.Setsid(p)
			what = "setsid"
		case op < 70:
			target := p
			if len(p.children) > 0 && r.IntN(2) == 0 {
				target = p.children[r.IntN(len(p.children))]
			}
			all := m.Processes()
			q := all[r.IntN(len(all))]
			pgid := q.PGid(p.NS)
			if r.IntN(2) == 0 {
				pgid = q.Nr(p.NS)
			}
			pid := int32(0)
			if target != p {
				pid = target.Nr(p.NS)
			}
			if pgid != 0 {
				err = m.Setpgid(p, pid, pgid)
				what = fmt.Sprintf("setpgid(%d, %d)", pid, pgid)
			}
		case op < 86:
			if p == w.root || p.NS.Init == p && w.others(p) {
				break
			}
			parent := p.Parent
			err = m.Exit(p, statuses[r.IntN(len(statuses))])
			what = "exit"
			if err == nil && r.IntN(2) == 0 && parent.State == Alive {
				_, err = m.Wait(parent, p.Nr(parent.NS))
				what = "exit+reap"
			}
		case op < 92:
			for _, q := range w.tree() {
				if q.State == Zombie && q.Parent.State == Alive {
					_, err = m.Wait(q.Parent, q.Nr(q.Parent.NS))
					what = fmt.Sprintf("reap %v", q.NSpid())
					break
				}
			}
		case op < 95:
			err = m.SetSubreaper(p, true)
			what = "subreaper"
		default:
			if p == w.root || r.IntN(3) != 0 {
				_, err = m.Clone(p, 0, nil, nil)
				what = "fork"
				break
			}
			// A sibling that shares its creator's: what its parent holds
			// only if the creator shares that with the parent.
			flags := CloneParent | shares[r.IntN(len(shares))]
			_, err = m.Clone(p, flags, nil, nil)
			what = "clone " + flags.String()
		}
		if what != "" {
			fmt.Fprintf(log, "  %v %s: %v\n", p.NSpid(), what, err)
		}
	}
	return w
}

// tree lists the processes of the world's tree (thread group leaders, alive
// or zombie), root first.
func (w *world) tree() []*Task {
	var out []*Task
	var visit func(p *Task)
	visit = func(p *Task) {
		out = append(out, p)
		for _, c := range p.children {
			if c.State != Reaped {
				visit(c)
			}
		}
	}
	visit(w.root)
	return out
}

// live lists the living processes of the tree.
func (w *world) live() []*Task {
	var out []*Task
	for _, p := range w.tree() {
		if p.State == Alive {
			out = append(out, p)
		}
	}
	return out
}

// others reports whether init's namespace holds another task.
func (w *world) others(init *Task) bool {
	for _, q := range w.m.Processes() {
		if q != init && q.Leader != init && q.Nr(init.NS) != 0 {
			return true
		}
	}
	return false
}
