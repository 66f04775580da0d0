package plan

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/ckptfs/ckptfs/image"
)

// ProcName names a process of the plan for people: "task 5/1" (its pid from
// the root's namespace inwards), "ghost 7", "placeholder #12", "restorer".
func (p *Plan) ProcName(id ProcID) string {
	if id < 0 || int(id) >= len(p.Procs) {
		return fmt.Sprintf("process #%d?", id)
	}
	pr := p.Procs[id]
	switch pr.Kind {
	case KindRestorer:
		return "restorer"
	case KindPlaceholder:
		return fmt.Sprintf("placeholder #%d", id)
	}
	kind := pr.Kind.String()
	switch {
	case pr.Thread:
		kind = "thread"
	case pr.Zombie:
		kind = "zombie"
	}
	return kind + " " + joinNrs(pr.NSpid)
}

func joinNrs(nrs []int32) string {
	s := make([]string, len(nrs))
	for i, n := range nrs {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, "/")
}

func (p *Plan) groupName(g image.Tag) string {
	if g == image.TagRoot {
		return "the restorer's group"
	}
	if id, ok := p.ByTag[g]; ok {
		return "group " + joinNrs(p.Procs[id].NSpid)
	}
	return fmt.Sprintf("group tag %d", g)
}

// StepString describes step i in one line.
func (p *Plan) StepString(i int) string {
	actor := p.ProcName(p.Steps[i].ActorID())
	switch s := p.Steps[i].(type) {
	case Clone:
		var b strings.Builder
		fmt.Fprintf(&b, "%s creates %s", actor, p.ProcName(s.Child))
		if s.Flags != 0 {
			fmt.Fprintf(&b, " with %s", s.Flags)
		}
		fmt.Fprintf(&b, " in namespace %d", s.NS)
		if s.Flags&CloneNewPID == 0 && s.Actor != Restorer && p.Procs[s.Actor].NS != s.NS {
			fmt.Fprintf(&b, " (setns first)")
		}
		fmt.Fprintf(&b, ", set_tid %v", s.SetTid)
		return b.String()
	case Setsid:
		return actor + " calls setsid"
	case Setpgid:
		if s.Target == s.Actor {
			if s.PGid == 0 && s.Group != image.TagRoot {
				return fmt.Sprintf("%s creates its own group: setpgid(0, 0)", actor)
			}
			return fmt.Sprintf("%s joins %s: setpgid(0, %d)", actor, p.groupName(s.Group), s.PGid)
		}
		return fmt.Sprintf("%s moves its child %s to %s: setpgid(%d, %d)", actor, p.ProcName(s.Target), p.groupName(s.Group), s.Pid, s.PGid)
	case Subreaper:
		if s.On {
			return actor + " becomes a child subreaper"
		}
		return actor + " stops being a child subreaper"
	case Exit:
		if p.Procs[s.Actor].Zombie {
			return fmt.Sprintf("%s exits with wait status %#x and stays a zombie", actor, s.Status)
		}
		return fmt.Sprintf("%s exits", actor)
	case Wait:
		return fmt.Sprintf("%s reaps %s (pid %d)", actor, p.ProcName(s.Child), s.Pid)
	}
	return fmt.Sprintf("%s: step %T", actor, p.Steps[i])
}

// WriteText prints the plan for people: the processes it makes, then the
// steps in order (ckptfs inspect --plan).
func (p *Plan) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	var ghosts, placeholders, tasks int
	for _, pr := range p.Procs {
		switch pr.Kind {
		case KindGhost:
			ghosts++
		case KindPlaceholder:
			placeholders++
		case KindTask:
			tasks++
		}
	}
	fmt.Fprintf(bw, "plan: %s mode, %d tasks, %d ghosts, %d placeholders, %d steps\n",
		p.Forest.Mode, tasks, ghosts, placeholders, len(p.Steps))
	for id, pr := range p.Procs {
		switch pr.Kind {
		case KindGhost:
			role := "dead group leader"
			for _, t := range p.Forest.Tree.Tasks {
				if t.Sid == pr.Tag {
					role = "dead session leader"
					break
				}
			}
			fmt.Fprintf(bw, "  %-22s %s, namespace %d\n", p.ProcName(ProcID(id)), role, pr.NS)
		case KindPlaceholder:
			fmt.Fprintf(bw, "  %-22s moves one task, namespace %d, pid %s\n", p.ProcName(ProcID(id)), pr.NS, joinNrs(pr.NSpid))
		}
	}
	for i := range p.Steps {
		fmt.Fprintf(bw, "%4d  %s\n", i+1, p.StepString(i))
	}
	return bw.Flush()
}

func (p *Plan) String() string {
	var b strings.Builder
	p.WriteText(&b)
	return b.String()
}
