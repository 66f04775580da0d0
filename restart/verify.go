package restart

import (
	"fmt"
	"slices"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/restart/internal/plan"
)

// verify checks every created task against the image through /proc before
// any state is put back: its pid at every level, its parent, thread group,
// process group and session. A plan proved on the model can still meet a
// kernel that disagrees; better to stop here than to run a wrong tree.
func (rs *restorer) verify() error {
	seedSt, err := procfs.ReadStatus(rs.ex.procs[plan.Restorer].tid)
	if err != nil {
		return err
	}
	level := len(seedSt.NSpid) - 1 // the root's level in our /proc
	if rs.plan.Forest.Mode == image.ModeContainer {
		level++
	}
	pids := &rs.plan.Forest.Pids
	number := func(tag image.Tag) []int {
		var out []int
		for _, l := range pids.Pids[tag-1].Levels {
			out = append(out, int(l.Nr))
		}
		return out
	}
	hostOf := func(tag image.Tag) int { return rs.ex.procs[rs.plan.ByTag[tag]].tid }
	for _, t := range rs.plan.Forest.Tree.Tasks {
		p := rs.ex.procs[rs.plan.ByTag[t.Pid]]
		if p == nil {
			return fmt.Errorf("task %v was never created", number(t.Pid))
		}
		tgid := hostOf(t.TGid)
		st, err := procfs.ReadTaskStatus(tgid, p.tid)
		if err != nil {
			return fmt.Errorf("pid %d: %w", p.tid, err)
		}
		want := number(t.Pid)
		if got := st.NSpid[level:]; !slices.Equal(got, want) {
			return fmt.Errorf("task %v was created with pids %v", want, got)
		}
		if t.TGid != t.Pid && st.Tgid != tgid {
			return fmt.Errorf("task %v: thread group %d, want %d", want, st.Tgid, tgid)
		}
		if t.PPid != image.TagAncestor && t.TGid == t.Pid && st.PPid != hostOf(t.PPid) {
			return fmt.Errorf("task %v: parent %d, want %d", want, st.PPid, hostOf(t.PPid))
		}
		for _, c := range []struct {
			what string
			tag  image.Tag
			got  []int
			root []int
		}{{"process group", t.PGid, st.NSpgid, seedSt.NSpgid}, {"session", t.Sid, st.NSsid, seedSt.NSsid}} {
			var ok bool
			switch c.tag {
			case image.TagRoot:
				ok = c.got[0] == c.root[0]
			case image.TagAncestor:
				ok = len(c.got) <= level || c.got[level] == 0 || rs.plan.Forest.Mode == image.ModeSubtree
			default:
				w := number(c.tag)
				n := min(len(w), len(c.got)-level)
				ok = slices.Equal(c.got[level:level+n], w[:n])
			}
			if !ok {
				return fmt.Errorf("task %v: %s %v is not the image's", want, c.what, c.got)
			}
		}
	}
	return nil
}
