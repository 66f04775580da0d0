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
// task's own pid. The rules every image's PIDS and TREE obey are the
// image's (image.CheckForest); load adds those of a forest the kernel can
// have made (see the rules below).
func (pl *planner) load() error {
	in := &pl.in
	if in.Mode != image.ModeContainer && in.Mode != image.ModeSubtree {
		return fmt.Errorf("%w: unknown mode %d", ErrRefused, in.Mode)
	}
	if err := image.CheckForest(in.Mode, &in.Pids, &in.Tree); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	pl.buildNodes()
	var r refusal
	pl.checkRoot(&r)
	pl.markZombies(&r)
	pl.outerFields(&r)
	if err := r.err(); err != nil {
		return err
	}
	pl.addGhosts()
	pl.checkSessions(&r)
	if err := r.err(); err != nil {
		return err
	}
	pl.checkInits(&r)
	return r.err()
}

// buildNodes makes a node of every task, in TREE order, linked to its
// parent, or to its leader for a thread (image.CheckForest made sure they
// come earlier).
func (pl *planner) buildNodes() {
	in := &pl.in
	pl.nodes = []*node{{id: Restorer, kind: KindRestorer, sid: keyOuter, pgid: keyOuter}}
	if in.Mode == image.ModeSubtree {
		pl.nodes[0].ns = 1
	}
	pl.byTag = map[image.Tag]*node{}
	for i := range in.Tree.Tasks {
		t := &in.Tree.Tasks[i]
		n := pl.newNode(KindTask, t.Pid)
		n.task = t
		n.sid, n.pgid = outerKey(t.Sid), outerKey(t.PGid)
		switch {
		case i == 0:
			pl.root = n
		case t.TGid != t.Pid:
			l := pl.byTag[t.TGid]
			n.thread, n.leader = true, l
			l.threads = append(l.threads, n)
		default:
			p := pl.byTag[t.PPid]
			n.parent = p
			p.children = append(p.children, n)
			n.depth = p.depth + 1
		}
	}
}

// checkRoot: a container's root is pid 1 of namespace 1; a subtree's root
// is no namespace init (that tree is a container).
func (pl *planner) checkRoot(r *refusal) {
	root := pl.root
	if pl.in.Mode == image.ModeContainer {
		if len(root.levels) != 1 || root.levels[0].Nr != 1 {
			r.add("%s: in container mode the root must be pid 1 of namespace 1", root)
		}
	} else if root.isInit {
		r.add("%s: in subtree mode the root cannot be a namespace init (use container mode)", root)
	}
}

// markZombies marks the zombies, which are processes of the tree with
// nothing alive under them and nothing to share.
func (pl *planner) markZombies(r *refusal) {
	for tag, status := range pl.in.Zombies {
		z := pl.byTag[tag]
		if z == nil || z.thread {
			r.add("zombie tag %d is not a process of the tree", tag)
			continue
		}
		z.zombie, z.status = true, status
		switch {
		case z == pl.root:
			r.add("%s: the root is a zombie", z)
		case len(z.children) > 0:
			r.add("%s: a zombie has children (%s)", z, z.children[0])
		case len(z.threads) > 0:
			r.add("%s: a zombie has live threads (%s)", z, z.threads[0])
		case z.task.Flags != 0:
			r.add("%s: a zombie holds no %s to share with its parent", z, sharesText(z.task.Flags))
		}
	}
}

// outerFields checks the sessions and groups from above the tree. Each
// field names at most one of them (a tree descends from one root), but the
// group may be visible in the root's namespace while its session is not.
func (pl *planner) outerFields(r *refusal) {
	var fromRoot, ancestor [2]bool // [0] groups, [1] sessions
	for _, t := range pl.in.Tree.Tasks {
		for i, x := range []image.Tag{t.PGid, t.Sid} {
			fromRoot[i] = fromRoot[i] || x == image.TagRoot
			ancestor[i] = ancestor[i] || x == image.TagAncestor
		}
	}
	switch {
	case fromRoot[0] && ancestor[0]:
		r.add("both TagRoot and TagAncestor name the process group from above the tree")
	case fromRoot[1] && ancestor[1]:
		r.add("both TagRoot and TagAncestor name the session from above the tree")
	case fromRoot[1] && ancestor[0]:
		r.add("the session from above the tree is visible (TagRoot) but its process group is not (TagAncestor)")
	case pl.in.Mode != image.ModeSubtree:
	case fromRoot[1]:
		pl.outer = OuterSession
	case fromRoot[0]:
		pl.outer = OuterGroup
	}
}

// addGhosts makes a ghost of every dead leader whose pid is still some
// task's group or session.
func (pl *planner) addGhosts() {
	for _, n := range pl.nodes[1:] {
		if n.thread {
			continue
		}
		for _, x := range []image.Tag{n.sid, n.pgid} {
			if x == keyOuter || pl.byTag[x] != nil {
				continue
			}
			g := pl.newNode(KindGhost, x)
			g.pgid = x
			g.sid = 0 // decided by checkSessions
		}
	}
	for _, n := range pl.nodes[1:] {
		if n.kind == KindTask && !n.thread && n.sid != keyOuter {
			if l := pl.byTag[n.sid]; l.kind == KindGhost {
				l.sid = l.tag
			}
		}
	}
}

// checkSessions checks that sessions and groups are what setsid and
// setpgid can make, and gives a dead group leader its members' session.
func (pl *planner) checkSessions(r *refusal) {
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
}

// checkInits: every namespace holding a task needs its init; an init that
// is dead (a ghost or a zombie) leaves nothing alive below it, since the
// kernel kills a namespace with its init.
func (pl *planner) checkInits(r *refusal) {
	for _, n := range pl.nodes[1:] {
		if n.isInit {
			pl.inits[n.ns] = n
		}
	}
	for _, n := range pl.nodes[1:] {
		if n == pl.root && pl.in.Mode == image.ModeSubtree {
			continue
		}
		ns := n.ns
		for ns != 0 && (pl.in.Mode == image.ModeContainer || ns != 1) {
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
