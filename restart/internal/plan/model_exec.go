package plan

import (
	"fmt"

	"github.com/ckptfs/ckptfs/image"
)

// Host is the starting point of a restart on the Model: the namespaces and
// processes that exist before the plan runs.
type Host struct {
	Model    *Model
	Restorer *Task
	// NS1 is the namespace that stands for the image's namespace tag 1 in
	// subtree mode (nil in container mode, where the plan creates it).
	NS1 *Namespace
}

// NewHost sets up the model a plan runs on. Container mode: the model's
// init forks the restorer, which later creates the container's namespace.
// Subtree mode: the model's init creates a namespace (image tag 1) whose
// init (pid 1 there) forks the restorer (pid 2 there), a child subreaper.
// Its session and group are the host init's, from an ancestor namespace
// (TagAncestor), until it makes them visible there (the image's TagRoot) as
// outer asks: setpgid for its group alone, setsid for both.
func NewHost(mode image.Mode, outer Outer) (*Host, error) {
	m, init := NewModel()
	h := &Host{Model: m}
	var err error
	if mode == image.ModeContainer {
		h.Restorer, err = m.Clone(init, 0, nil, nil)
	} else {
		var i1 *Task
		i1, err = m.Clone(init, CloneNewPID, nil, nil)
		if err == nil {
			i1.Name = "namespace init"
			h.NS1 = i1.NS
			h.Restorer, err = m.Clone(i1, 0, nil, nil)
		}
		if err == nil {
			h.Restorer.Subreaper = true
			switch outer {
			case OuterGroup:
				err = m.Setpgid(h.Restorer, 0, 0)
			case OuterSession:
				err = m.Setsid(h.Restorer)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	h.Restorer.Name = "restorer"
	return h, nil
}

// Execute runs a plan on a fresh model and returns the forest it built. It
// fails on the first step the kernel would refuse, and if a ghost or
// placeholder is left, a task missing or a zombie not a zombie.
func Execute(p *Plan) (Forest, error) {
	h, err := NewHost(p.Forest.Mode, p.Outer)
	if err != nil {
		return Forest{}, err
	}
	m := h.Model
	procs := make([]*Task, len(p.Procs))
	procs[Restorer] = h.Restorer
	nsMap := map[image.Tag]*Namespace{}
	if h.NS1 != nil {
		nsMap[1] = h.NS1
	}
	nsParent := func(t image.Tag) image.Tag {
		if t == 0 || int(t) > len(p.Forest.Pids.NS) {
			return 0
		}
		return p.Forest.Pids.NS[t-1].Parent
	}
	get := func(id ProcID) (*Task, error) {
		if id < 0 || int(id) >= len(procs) || procs[id] == nil {
			return nil, fmt.Errorf("process %d does not exist", id)
		}
		return procs[id], nil
	}
	for i, st := range p.Steps {
		err := func() error {
			actor, err := get(st.ActorID())
			if err != nil {
				return err
			}
			switch s := st.(type) {
			case Clone:
				if int(s.Child) >= len(procs) || procs[s.Child] != nil {
					return fmt.Errorf("child %d created twice or unknown", s.Child)
				}
				var pfc *Namespace
				if s.Flags&CloneNewPID != 0 {
					if nsMap[s.NS] != nil {
						return fmt.Errorf("namespace %d created twice", s.NS)
					}
					want := h.Restorer.NS
					if pt := nsParent(s.NS); pt != 0 {
						want = nsMap[pt]
					}
					if actor.NS != want {
						return fmt.Errorf("new namespace %d would not be a child of namespace %d", s.NS, nsParent(s.NS))
					}
				} else if pfc = nsMap[s.NS]; pfc == nil {
					return fmt.Errorf("namespace %d does not exist", s.NS)
				}
				c, err := m.Clone(actor, s.Flags, pfc, s.SetTid)
				if err != nil {
					return err
				}
				if s.Flags&CloneNewPID != 0 {
					nsMap[s.NS] = c.NS
				}
				c.Name = p.ProcName(s.Child)
				procs[s.Child] = c
			case Setsid:
				return m.Setsid(actor)
			case Setpgid:
				target, err := get(s.Target)
				if err != nil {
					return err
				}
				if (s.Pid == 0) != (target == actor) || s.Pid != 0 && target.Nr(actor.NS) != s.Pid {
					return fmt.Errorf("setpgid: pid %d is not %s", s.Pid, target)
				}
				pgid := s.PGid
				if s.Group == image.TagRoot {
					pgid = h.Restorer.PGid(actor.NS)
				}
				return m.Setpgid(actor, s.Pid, pgid)
			case Subreaper:
				return m.SetSubreaper(actor, s.On)
			case Exit:
				return m.Exit(actor, s.Status)
			case Wait:
				c, err := get(s.Child)
				if err != nil {
					return err
				}
				if c.Nr(actor.NS) != s.Pid {
					return fmt.Errorf("wait: pid %d is not %s", s.Pid, c)
				}
				_, err = m.Wait(actor, s.Pid)
				return err
			default:
				return fmt.Errorf("unknown step %T", st)
			}
			return nil
		}()
		if err != nil {
			return Forest{}, fmt.Errorf("step %d (%s): %w", i+1, p.StepString(i), err)
		}
	}
	for id, pr := range p.Procs {
		q := procs[id]
		switch {
		case q == nil:
			return Forest{}, fmt.Errorf("%s was never created", p.ProcName(ProcID(id)))
		case pr.Kind == KindGhost || pr.Kind == KindPlaceholder:
			if q.State != Reaped {
				return Forest{}, fmt.Errorf("%s is left behind", q)
			}
		case pr.Kind == KindTask:
			want := Alive
			if pr.Zombie {
				want = Zombie
			}
			if q.State != want {
				return Forest{}, fmt.Errorf("%s: state %d, want %d", q, q.State, want)
			}
		}
	}
	return Snapshot(procs[p.Root], p.Forest.Mode)
}
