package plan

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ckptfs/ckptfs/image"
)

// ErrRefused is wrapped by every error of Make about its input: the
// forest cannot be rebuilt (or is malformed), and nothing was created.
var ErrRefused = errors.New("restart: forest cannot be rebuilt")

// keyOuter is the planner's name for the session or group the restorer
// holds: the image's TagRoot and TagAncestor. Both mean "inherited from
// above the tree", and a tree descends from one root, so each names one
// group or one session (load refuses a field that uses both).
const keyOuter = image.TagRoot

func outerKey(t image.Tag) image.Tag {
	if t == image.TagAncestor {
		return keyOuter
	}
	return t
}

// refuse collects the reasons an input cannot be rebuilt.
type refusal struct{ reasons []string }

func (r *refusal) add(format string, args ...any) {
	if len(r.reasons) < 20 {
		r.reasons = append(r.reasons, fmt.Sprintf(format, args...))
	}
}

func (r *refusal) err() error {
	if len(r.reasons) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRefused, strings.Join(r.reasons, "; "))
}

// load checks the input and builds the planner's nodes: one per task, then
// one ghost per pid that is some task's process group or session but no
// task's own pid.
func (pl *planner) load() error {
	in := &pl.in
	var r refusal
	if in.Mode != image.ModeContainer && in.Mode != image.ModeSubtree {
		r.add("unknown mode %d", in.Mode)
		return r.err()
	}
	// Namespaces: tag 1 is the root's; a parent is defined before its child.
	for i, ns := range in.Pids.NS {
		tag := image.Tag(i + 1)
		if (tag == 1 && ns.Parent != 0) || (tag > 1 && (ns.Parent == 0 || ns.Parent >= tag)) {
			r.add("namespace %d: bad parent %d", tag, ns.Parent)
		}
	}
	if len(in.Pids.NS) == 0 {
		r.add("no pid namespace")
	}
	if err := r.err(); err != nil {
		return err
	}
	type nsnr struct {
		ns image.Tag
		nr int32
	}
	seen := map[nsnr]image.Tag{}
	for i, p := range in.Pids.Pids {
		tag := image.Tag(i + 1)
		if len(p.Levels) == 0 || len(p.Levels) > image.MaxPidLevel+1 {
			r.add("pid tag %d: %d levels", tag, len(p.Levels))
			continue
		}
		for k, lv := range p.Levels {
			switch {
			case lv.NS == 0 || int(lv.NS) > len(in.Pids.NS):
				r.add("pid tag %d: level %d names namespace %d, undefined", tag, k, lv.NS)
			case k == 0 && lv.NS != 1:
				r.add("pid tag %d: outermost level is in namespace %d, not the root's", tag, lv.NS)
			case k > 0 && pl.nsParent(lv.NS) != p.Levels[k-1].NS:
				r.add("pid tag %d: namespace %d at level %d is not a child of namespace %d", tag, lv.NS, k, p.Levels[k-1].NS)
			case lv.Nr <= 0:
				r.add("pid tag %d: number %d", tag, lv.Nr)
			default:
				if other, dup := seen[nsnr{lv.NS, lv.Nr}]; dup {
					r.add("pid %d in namespace %d belongs to both pid tags %d and %d", lv.Nr, lv.NS, other, tag)
				}
				seen[nsnr{lv.NS, lv.Nr}] = tag
			}
		}
	}
	if err := r.err(); err != nil {
		return err
	}

	tasks := in.Tree.Tasks
	if len(tasks) == 0 {
		r.add("empty tree")
		return r.err()
	}
	validTag := func(t image.Tag) bool { return t >= 1 && int(t) <= len(in.Pids.Pids) }
	pl.nodes = []*node{{id: Restorer, kind: KindRestorer, sid: keyOuter, pgid: keyOuter}}
	if in.Mode == image.ModeSubtree {
		pl.nodes[0].ns = 1
	}
	pl.byTag = map[image.Tag]*node{}
	for i := range tasks {
		t := &tasks[i]
		if !validTag(t.Pid) {
			r.add("task %d: pid tag %d undefined", i, t.Pid)
			continue
		}
		if pl.byTag[t.Pid] != nil {
			r.add("pid tag %d is the pid of two tasks", t.Pid)
			continue
		}
		n := pl.newNode(KindTask, t.Pid)
		n.task = t
		if int(t.Depth) != len(n.levels)-1 {
			r.add("%s: depth %d but its pid has %d levels", n, t.Depth, len(n.levels))
		}
		for _, x := range []image.Tag{t.PGid, t.Sid} {
			if x != image.TagAncestor && x != image.TagRoot && !validTag(x) {
				r.add("%s: group or session tag %d undefined", n, x)
			}
		}
		n.sid, n.pgid = outerKey(t.Sid), outerKey(t.PGid)
		if u := t.Flags &^ image.TaskFlagsKnown; u != 0 {
			r.add("%s: unknown flags %#x", n, uint32(u))
		}
		if i == 0 {
			pl.root = n
			if t.PPid != image.TagAncestor || t.TGid != t.Pid {
				r.add("%s: the root must have parent 0 and lead its thread group", n)
			}
			if t.Flags != 0 {
				r.add("%s: the root cannot share its parent's %s: its parent is outside the tree", n, sharesText(t.Flags))
			}
			continue
		}
		if t.TGid != t.Pid {
			l := pl.byTag[t.TGid]
			if l == nil || l.thread {
				r.add("%s: thread group leader tag %d is not an earlier process", n, t.TGid)
				continue
			}
			n.thread, n.leader = true, l
			l.threads = append(l.threads, n)
			if t.PPid != l.task.PPid || t.PGid != l.task.PGid || t.Sid != l.task.Sid {
				r.add("%s: a thread must share its leader %s's parent, group and session", n, l)
			}
			if n.ns != l.ns || n.isInit {
				r.add("%s: a thread must live in its leader %s's namespace and not be its init", n, l)
			}
			if t.Flags != 0 {
				r.add("%s: a thread shares everything with its leader %s and carries no flags (%s)", n, l, t.Flags)
			}
			continue
		}
		p := pl.byTag[t.PPid]
		if p == nil || p.thread {
			r.add("%s: parent tag %d is not an earlier process of the tree", n, t.PPid)
			continue
		}
		n.parent = p
		p.children = append(p.children, n)
		n.depth = p.depth + 1
	}
	if err := r.err(); err != nil {
		return err
	}
	root := pl.root
	if in.Mode == image.ModeContainer {
		if len(root.levels) != 1 || root.levels[0].Nr != 1 {
			r.add("%s: in container mode the root must be pid 1 of namespace 1", root)
		}
	} else if root.isInit {
		r.add("%s: in subtree mode the root cannot be a namespace init (use container mode)", root)
	}
	for tag, status := range in.Zombies {
		z := pl.byTag[tag]
		if z == nil || z.thread {
			r.add("zombie tag %d is not a process of the tree", tag)
			continue
		}
		z.zombie, z.status = true, status
		switch {
		case z == root:
			r.add("%s: the root is a zombie", z)
		case len(z.children) > 0:
			r.add("%s: a zombie has children (%s)", z, z.children[0])
		case len(z.threads) > 0:
			r.add("%s: a zombie has live threads (%s)", z, z.threads[0])
		case z.task.Flags != 0:
			r.add("%s: a zombie holds no %s to share with its parent", z, sharesText(z.task.Flags))
		}
	}

	// Sessions and groups from above the tree. Each field names at most one
	// of them (a tree descends from one root), but the group may be visible
	// in the root's namespace while its session is not.
	var fromRoot, ancestor [2]bool // [0] groups, [1] sessions
	for _, t := range tasks {
		for i, x := range []image.Tag{t.PGid, t.Sid} {
			fromRoot[i] = fromRoot[i] || x == image.TagRoot
			ancestor[i] = ancestor[i] || x == image.TagAncestor
		}
	}
	switch {
	case in.Mode == image.ModeContainer && (fromRoot[0] || fromRoot[1]):
		r.add("TagRoot is meaningless in container mode")
	case fromRoot[0] && ancestor[0]:
		r.add("both TagRoot and TagAncestor name the process group from above the tree")
	case fromRoot[1] && ancestor[1]:
		r.add("both TagRoot and TagAncestor name the session from above the tree")
	case fromRoot[1] && ancestor[0]:
		r.add("the session from above the tree is visible (TagRoot) but its process group is not (TagAncestor)")
	case in.Mode != image.ModeSubtree:
	case fromRoot[1]:
		pl.outer = OuterSession
	case fromRoot[0]:
		pl.outer = OuterGroup
	}

	// Ghosts: dead leaders whose pid is still some task's group or session.
	procs := pl.nodes[1:]
	for _, n := range procs {
		if n.thread {
			continue
		}
		for _, x := range []image.Tag{n.sid, n.pgid} {
			if x == keyOuter || pl.byTag[x] != nil {
				continue
			}
			g := pl.newNode(KindGhost, x)
			g.pgid = x
			g.sid = 0 // decided below
		}
	}
	for _, n := range pl.nodes[1:] {
		if n.kind == KindTask && !n.thread && n.sid != keyOuter {
			if l := pl.byTag[n.sid]; l.kind == KindGhost {
				l.sid = l.tag
			}
		}
	}
	// A group's session: its leader's, or for a dead leader its members'.
	for _, n := range pl.nodes[1:] {
		if n.kind != KindTask || n.thread {
			continue
		}
		if n.sid != keyOuter {
			l := pl.byTag[n.sid]
			switch {
			case l.thread:
				r.add("%s: its session %s is a thread", n, l)
			case l.kind == KindTask && l.sid != l.tag:
				r.add("%s: its session is pid %s, but that task is in session %s: only setsid names a session, after the caller", n, pl.keyName(n.sid), pl.keyName(l.sid))
			}
		}
		if n.sid == n.tag && n.pgid != n.tag {
			r.add("%s: a session leader is in group %s, but setsid makes it lead its own group and setpgid refuses a session leader", n, pl.keyName(n.pgid))
		}
		if n.pgid == keyOuter {
			if n.sid != keyOuter {
				r.add("%s: in the group from above the tree but in session %s", n, pl.keyName(n.sid))
			}
			continue
		}
		g := pl.byTag[n.pgid]
		if g.thread {
			r.add("%s: its group %s is a thread", n, g)
			continue
		}
		if g != n {
			g.leadsGroup = true
		}
		if g.kind == KindGhost && g.sid == 0 {
			g.sid = n.sid
		}
		if g.sid != n.sid {
			r.add("%s: in session %s but its group %s is in session %s", n, pl.keyName(n.sid), pl.keyName(n.pgid), pl.keyName(g.sid))
		}
	}
	if err := r.err(); err != nil {
		return err
	}

	// Namespaces: every namespace holding a task needs its init; an init that
	// is dead (a ghost or a zombie) leaves nothing alive below it, since the
	// kernel kills a namespace with its init.
	for _, n := range pl.nodes[1:] {
		if n.isInit {
			pl.inits[n.ns] = n
		}
	}
	for _, n := range pl.nodes[1:] {
		if n == root && in.Mode == image.ModeSubtree {
			continue
		}
		ns := n.ns
		for ns != 0 && (in.Mode == image.ModeContainer || ns != 1) {
			init := pl.inits[ns]
			switch {
			case init == nil:
				r.add("%s lives in namespace %d, which has no init in the image", n, ns)
			case init != n && n.kind == KindTask && (init.kind == KindGhost || init.zombie):
				r.add("%s lives in namespace %d, whose init %s is dead: the kernel would have killed it", n, ns, init)
			}
			ns = pl.nsParent(ns)
		}
	}
	return r.err()
}

func (pl *planner) newNode(kind ProcKind, tag image.Tag) *node {
	n := &node{id: ProcID(len(pl.nodes)), kind: kind, tag: tag}
	n.levels = pl.in.Pids.Pids[tag-1].Levels
	in := n.levels[len(n.levels)-1]
	n.ns, n.isInit = in.NS, in.Nr == 1
	pl.nodes = append(pl.nodes, n)
	pl.byTag[tag] = n
	return n
}

// nsParent is the parent of a namespace; 0 for the root's (tag 1).
func (pl *planner) nsParent(ns image.Tag) image.Tag {
	if ns == 0 {
		return 0
	}
	return pl.in.Pids.NS[ns-1].Parent
}

// nsWithin reports whether ns is anc or below it; 0 stands for the
// namespace outside the image, above everything.
func (pl *planner) nsWithin(ns, anc image.Tag) bool {
	if anc == 0 {
		return true
	}
	for ; ns != 0; ns = pl.nsParent(ns) {
		if ns == anc {
			return true
		}
	}
	return false
}

// keyName names a session or group for messages: its pid numbers.
func (pl *planner) keyName(k image.Tag) string {
	if k == keyOuter {
		return "(from above the tree)"
	}
	if k == 0 || int(k) > len(pl.in.Pids.Pids) {
		return fmt.Sprintf("(tag %d)", k)
	}
	return nspidString(pl.in.Pids.Pids[k-1].Levels)
}

func nspidString(levels []image.PidLevel) string {
	var b strings.Builder
	for i, lv := range levels {
		if i > 0 {
			b.WriteByte('/')
		}
		fmt.Fprint(&b, lv.Nr)
	}
	return b.String()
}
