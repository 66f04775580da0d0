package plan

import (
	"fmt"
	"sort"

	"github.com/ckptfs/ckptfs/image"
)

// MakeForest, the algorithm behind Make.
//
// A process's pid, session and group can only be set at creation and by
// setsid/setpgid, and a session's members descend by fork from its leader.
// So the planner first decides, top down, who creates each process and how,
// then emits the steps by walking those decisions from the root:
//
//   - Every process X has a parent P in the image. If X leads its session, or
//     inherits P's session, P creates X ("direct").
//   - If X is in the session P had before P called setsid, P creates X before
//     that setsid ("early"). A session leader whose child needs such an early
//     session is itself created inside that session when possible.
//   - Otherwise X must be created by a member M of its session (its leader
//     first, a ghost if the leader is dead) and moved under P: with
//     CLONE_PARENT when M is P's child, else through a placeholder that M
//     creates, that creates X and exits at once, so that X is reparented to
//     P. The kernel hands orphans to the nearest child subreaper among the
//     ancestors in the same pid namespace, else to the namespace's init; so
//     P must be that init, or an ancestor of M in M's namespace, which is
//     made a subreaper for the time of the exit.
//   - A dead session leader is a ghost placed under the deepest parent of its
//     members that live outside it, so that they are created with
//     CLONE_PARENT. A dead group leader is a ghost created by a member of
//     the group's session.
//   - Groups are set after sessions: a group's leader (or ghost) creates it
//     (setsid or setpgid(0,0)), members join when it exists (setpgid by the
//     member, or by its parent when the group is not visible in the member's
//     namespace); a leader that has since moved to another group does so at
//     the end. A task whose group cannot be named from its namespace or its
//     parent's (an init of a nested namespace that inherited its group) is
//     created while its creator is still in that group.
//   - A process that shares its parent's descriptor table or fs struct is
//     created with CLONE_FILES or CLONE_FS by a process holding the same
//     one: its parent, or a sharer of it (see plan_sharing.go).
//   - Threads are created by their leader with CLONE_THREAD.
//   - At the end, ghosts and zombies exit, the latest created first, so that
//     none of them has children left; ghosts are reaped by their parents,
//     zombies are not.
//
// The emitted plan is then run on the Model and its result compared with the
// input, so a plan Make returns is one the kernel's rules accept.

type how uint8

const (
	howDirect      how = iota // the parent creates it, in its final session
	howEarly                  // the parent creates it before its setsid/setpgid
	howCloneParent            // a sibling in its session creates it with CLONE_PARENT
	howPlaceholder            // a member of its session creates it through a placeholder
)

// node is the planner's view of a process.
type node struct {
	id       ProcID
	kind     ProcKind
	tag      image.Tag
	task     *image.Task
	levels   []image.PidLevel
	ns       image.Tag
	isInit   bool
	thread   bool
	leader   *node
	parent   *node // the image's parent; for a ghost the chosen one
	sid      image.Tag
	pgid     image.Tag
	zombie   bool
	status   int32
	children []*node
	threads  []*node
	depth    int // in the image tree
	// leadsGroup: other processes are in the group named by its pid.
	leadsGroup bool
	// handsOn: a ghost's flags of what it shares with its creator, to
	// hand on to a process it creates (see plan_sharing.go).
	handsOn image.TaskFlags

	// Decisions.
	decided   bool
	creator   *node
	how       how
	reaper    *node // howPlaceholder: the parent the task is reparented to
	needSub   bool  // howPlaceholder: reaper must be a subreaper for the exit
	t0sid     image.Tag
	t0pgid    image.Tag
	needPgid  image.Tag // the group it must be born in, 0 if any
	needSid   image.Tag // the session it must be born in, 0 if any
	early     []*node
	normal    []*node
	externals []*node

	// Emission state.
	created   bool
	exited    bool
	curParent *node
	curSid    image.Tag
	curPgid   image.Tag
}

func (n *node) String() string {
	switch n.kind {
	case KindRestorer:
		return "restorer"
	case KindPlaceholder:
		return fmt.Sprintf("placeholder #%d", n.id)
	case KindTask:
		if n.thread {
			return "thread " + nspidString(n.levels)
		}
		if n.zombie {
			return "zombie " + nspidString(n.levels)
		}
	}
	return n.kind.String() + " " + nspidString(n.levels)
}

type planner struct {
	in    Forest
	nodes []*node // by ProcID
	byTag map[image.Tag]*node
	root  *node
	inits map[image.Tag]*node // namespace init by namespace tag
	outer Outer

	steps    []Step
	order    []*node               // creation order
	pending  map[image.Tag][]*node // members waiting for their group
	waitNS   map[image.Tag][]*node // processes waiting for their namespace
	waitJoin map[*node][]*node     // children waiting for their creator's group
	late     []*node               // group leaders that end in another group
	free     map[image.Tag]int32   // next number for a placeholder, by namespace
	procs    []Proc
}

// Make computes a plan that rebuilds in exactly. An input that is
// malformed or that no sequence of clone, setsid, setpgid and exit can
// produce is refused with an error wrapping ErrRefused that names the tasks
// by pid and says why.
func Make(in Forest) (*Plan, error) {
	pl := &planner{in: in, inits: map[image.Tag]*node{}, pending: map[image.Tag][]*node{}, waitNS: map[image.Tag][]*node{}, waitJoin: map[*node][]*node{}, free: map[image.Tag]int32{}}
	if err := pl.load(); err != nil {
		return nil, err
	}
	if err := pl.decide(); err != nil {
		return nil, err
	}
	if err := pl.emit(); err != nil {
		return nil, err
	}
	p := &Plan{Forest: in, Outer: pl.outer, Steps: pl.steps, ByTag: map[image.Tag]ProcID{}, Root: pl.root.id,
		RestoredLater: restoredLater(&in.Tree)}
	for _, n := range pl.nodes {
		pr := Proc{Kind: n.kind, Tag: n.tag, NS: n.ns, Zombie: n.zombie, Status: n.status, Thread: n.thread}
		for _, lv := range n.levels {
			pr.NSpid = append(pr.NSpid, lv.Nr)
		}
		p.Procs = append(p.Procs, pr)
		if n.tag != 0 {
			p.ByTag[n.tag] = n.id
		}
	}
	// Prove the plan on the model before anyone runs it.
	out, err := Execute(p)
	if err == nil {
		err = SameForest(in, out)
	}
	if err != nil {
		return nil, fmt.Errorf("restart: internal error: the plan does not rebuild the forest: %w", err)
	}
	return p, nil
}

// ---- decisions ----

func (pl *planner) decide() error {
	var r refusal
	root := pl.root
	root.decided, root.creator, root.how = true, pl.nodes[Restorer], howDirect
	root.t0sid, root.t0pgid = keyOuter, keyOuter
	pl.nodes[Restorer].normal = append(pl.nodes[Restorer].normal, root)
	pl.nodes[Restorer].decided = true
	pl.nodes[Restorer].t0sid, pl.nodes[Restorer].t0pgid = keyOuter, keyOuter
	pl.needGroups()
	for _, n := range pl.nodes[1:] {
		if n.kind != KindTask || n.thread || n == root {
			continue
		}
		if err := pl.decideTask(n); err != nil {
			r.add("%v", err)
		}
	}
	// Ghosts nobody needed on the way (group ghosts, mostly).
	for _, n := range pl.nodes[1:] {
		if n.kind == KindGhost && !n.decided {
			if err := pl.placeGhost(n, nil); err != nil {
				r.add("%v", err)
			}
		}
	}
	return r.err()
}

// needGroups finds the session each task must be born in (its own, or for
// a session leader the one a child it forks before its setsid needs), and
// the tasks that must be born in a given process group:
// those whose group can be named neither from their namespace nor, as a
// child in the same session, from their parent's (an init of a nested
// namespace that inherited its group), so that they can only inherit it;
// and, since a task can leave the group it was born in but never come back
// to one it cannot name, the parents whose such children are created before
// they change group. Children come after parents in the image, so a
// backward pass sees every child first.
func (pl *planner) needGroups() {
	for i := len(pl.nodes) - 1; i >= 1; i-- {
		x := pl.nodes[i]
		if x.kind != KindTask || x.thread || x == pl.root {
			continue
		}
		// The session x must be born in: its own unless it leads it; else
		// the one a child needs that x creates before its setsid.
		if x.sid != x.tag {
			x.needSid = x.sid
		} else {
			for _, y := range x.children {
				if y.needSid != 0 && y.needSid != x.tag {
					x.needSid = y.needSid
					break
				}
			}
		}
		ownGroup := x.sid == x.tag || x.pgid == x.tag || x.leadsGroup
		if !ownGroup && !pl.visible(x.pgid, x.ns) {
			if p := x.parent; !(p.sid == x.sid && pl.visible(x.pgid, p.ns)) {
				x.needPgid = x.pgid
			}
			continue
		}
		// x can join a group its children need before it forks them, as
		// long as it (or its parent) can name it; one it cannot name it
		// must be born in.
		bs := x.needSid
		if bs == 0 {
			bs = x.sid
		}
		for _, y := range x.children {
			g := y.needPgid
			if g == 0 || g == x.pgid || pl.visible(g, x.ns) {
				continue
			}
			if p := x.parent; pl.visible(g, p.ns) && (p.sid == bs || p.needSid == bs) {
				continue
			}
			x.needPgid = g
			break
		}
	}
}

// decideTask chooses the creator of a task that is neither the root nor a
// thread.
func (pl *planner) decideTask(x *node) error {
	if x.sid == x.tag {
		// A session leader may be created anywhere; but a child of it that
		// is in another session was most likely forked before its setsid,
		// so create the leader in that session if possible.
		tried := map[image.Tag]bool{}
		for _, y := range x.children {
			if s := y.needSid; s != 0 && s != x.tag && !tried[s] {
				tried[s] = true
				if pl.tryCreate(x, s, false) {
					return nil
				}
			}
		}
		if pl.tryCreate(x, 0, true) {
			return nil
		}
		return fmt.Errorf("%s: its parent %s cannot create it in namespace %d", x, x.parent, x.ns)
	}
	if pl.tryCreate(x, x.sid, false) {
		return nil
	}
	if f := x.taskFlags(); f != 0 {
		return fmt.Errorf("%s (session %s, parent %s in session %s): it shares its parent's %s, so only a process holding that can create it, and none of them can in its session",
			x, pl.keyName(x.sid), x.parent, pl.keyName(x.parent.sid), sharesText(f))
	}
	return fmt.Errorf("%s (session %s, parent %s in session %s): no process of its session can create it and make it a child of %s",
		x, pl.keyName(x.sid), x.parent, pl.keyName(x.parent.sid), x.parent)
}

// tryCreate decides how x is created so that it is born in session s (any
// session if any), and records the decision.
func (pl *planner) tryCreate(x *node, s image.Tag, any bool) bool {
	p := x.parent
	set := func(c *node, h how, sid, pgid image.Tag) {
		x.decided, x.creator, x.how, x.t0sid, x.t0pgid = true, c, h, sid, pgid
	}
	if pl.fits(p, x) {
		// p has an early phase when it changes session or group after it
		// is born. x is born in it when it needs p's session or group of
		// then (see needGroups).
		// In its early phase p can also join, for a while, a group x must
		// inherit (build does it).
		hasEarly := p.kind != KindRestorer && (p.t0sid != p.sid || p.t0pgid != p.pgid)
		g := x.needPgid
		finalS, earlyS := any || p.sid == s, hasEarly && (any || p.t0sid == s)
		finalG := g == 0 || p.pgid == g
		switch {
		case finalS && finalG:
			set(p, howDirect, p.sid, p.pgid)
			p.normal = append(p.normal, x)
			return true
		case earlyS:
			set(p, howEarly, p.t0sid, p.t0pgid)
			p.early = append(p.early, x)
			return true
		case finalS:
			set(p, howDirect, p.sid, p.pgid)
			p.normal = append(p.normal, x)
			return true
		}
	}
	if any {
		return false
	}
	for _, m := range pl.sessionCreators(s) {
		if m == x || m.thread || pl.descends(m, x) {
			continue
		}
		if m.kind == KindGhost && !m.decided {
			if pl.placeGhost(m, p) != nil {
				continue
			}
		}
		if !m.decided || pl.dependsOn(m, x) {
			continue
		}
		// x may share p's table or fs struct: m must hold it too. A ghost
		// may take its creator's to hand them on.
		handsOn := m.handsOn
		if m.kind == KindGhost && !canShare(m, x) {
			m.handsOn |= x.taskFlags()
		}
		if !canShare(m, x) {
			m.handsOn = handsOn
			continue
		}
		// CLONE_PARENT: m is p's child; refused for a namespace init.
		if m.parent == p && m.kind != KindRestorer && !m.isInit && pl.fits(m, x) {
			set(m, howCloneParent, m.sid, m.pgid)
			m.externals = append(m.externals, x)
			return true
		}
		// Placeholder: it lives in m's namespace and dies there.
		initReaper := p.isInit && p.ns == m.ns
		if m.kind != KindRestorer && pl.fitsNS(m.ns, x) && (initReaper || pl.sameNSChain(m, p)) {
			set(m, howPlaceholder, m.sid, m.pgid)
			x.reaper, x.needSub = p, !initReaper
			m.externals = append(m.externals, x)
			return true
		}
		m.handsOn = handsOn
	}
	return false
}

// sessionCreators lists who may create a process born in session s: its
// leader (the restorer for the session from above), then its members in
// tree order.
func (pl *planner) sessionCreators(s image.Tag) []*node {
	var out []*node
	if s == keyOuter {
		out = append(out, pl.nodes[Restorer])
	} else if l := pl.byTag[s]; l != nil {
		out = append(out, l)
	}
	for _, n := range pl.nodes[1:] {
		if n.kind == KindTask && !n.thread && n.sid == s && n.tag != s {
			out = append(out, n)
		}
	}
	return out
}

// placeGhost chooses where a ghost is created. A session ghost goes under
// the deepest parent of the members that live outside its session (hint
// first), so they can be created as its siblings; a group ghost is created
// by a process of the group's session.
func (pl *planner) placeGhost(g *node, hint *node) error {
	var cands []*node
	if g.sid == g.tag {
		var outside []*node
		for _, n := range pl.nodes[1:] {
			if n.kind == KindTask && !n.thread && n.sid == g.tag && n.parent != nil && n.parent.sid != g.tag {
				outside = append(outside, n.parent)
			}
		}
		sort.SliceStable(outside, func(i, j int) bool { return outside[i].depth > outside[j].depth })
		cands = append(cands, outside...)
		if hint != nil {
			cands = append(cands, hint)
		}
		for _, n := range pl.nodes[1:] {
			if n.kind == KindTask && !n.thread {
				cands = append(cands, n)
			}
		}
		cands = append(cands, pl.nodes[Restorer])
	} else {
		for _, m := range pl.sessionCreators(g.sid) {
			if m.kind == KindGhost && !m.decided && m != g {
				if err := pl.placeGhost(m, nil); err != nil {
					return err
				}
			}
			cands = append(cands, m)
		}
		// Then those that were in that session before their setsid.
		for _, n := range pl.nodes[1:] {
			if n.kind == KindTask && !n.thread && n.decided && n.sid != g.sid && n.t0sid == g.sid {
				cands = append(cands, n)
			}
		}
	}
	for _, q := range cands {
		if q == g || q.kind == KindGhost && !q.decided || !pl.fits(q, g) || pl.dependsOn(q, g) {
			continue
		}
		early := false
		if g.sid != g.tag && q.sid != g.sid {
			if q.t0sid != g.sid {
				continue
			}
			early = true
		}
		if q.kind == KindTask && !q.decided && pl.mayDependOn(q, g) {
			continue
		}
		g.decided, g.creator, g.how, g.parent = true, q, howDirect, q
		g.t0sid, g.t0pgid = q.sid, q.pgid
		g.depth = q.depth + 1
		// Ghosts go first among q's children: tasks created later may need
		// their groups.
		if early {
			g.how, g.t0sid, g.t0pgid = howEarly, q.t0sid, q.t0pgid
			q.early = append([]*node{g}, q.early...)
			return nil
		}
		q.normal = append([]*node{g}, q.normal...)
		return nil
	}
	return fmt.Errorf("%s: no process of its session %s can create it in namespace %d", g, pl.keyName(g.sid), g.ns)
}

// fits reports whether c can create x in x's namespace: a namespace init
// with CLONE_NEWPID from the parent namespace (which must be c's own), any
// other process in c's namespace or, after setns, below it.
func (pl *planner) fits(c, x *node) bool { return pl.fitsNS(c.ns, x) }

func (pl *planner) fitsNS(ns image.Tag, x *node) bool {
	if ns == 0 && !x.isInit {
		// The restorer outside a container creates its init only: it cannot
		// name what it would create inside by pid (to reap a ghost, say).
		return false
	}
	if x.isInit {
		return pl.nsParent(x.ns) == ns
	}
	return pl.nsWithin(x.ns, ns)
}

// visible reports whether a group or session can be named from namespace ns.
func (pl *planner) visible(k image.Tag, ns image.Tag) bool {
	return pl.nr(k, ns) != 0 || k == keyOuter && pl.outer != OuterHidden && ns == 1
}

// nr is the number of pid tag k in namespace ns, 0 if it has none there.
func (pl *planner) nr(k image.Tag, ns image.Tag) int32 {
	if k == 0 || k == keyOuter || ns == 0 {
		return 0
	}
	for _, lv := range pl.in.Pids.Pids[k-1].Levels {
		if lv.NS == ns {
			return lv.Nr
		}
	}
	return 0
}

// descends reports whether m is below x in the image tree (or is x).
func (pl *planner) descends(m, x *node) bool {
	for ; m != nil; m = m.parent {
		if m == x {
			return true
		}
	}
	return false
}

// sameNSChain reports whether p is an ancestor of m with every process from
// m up to p in m's namespace: the path find_new_reaper walks.
func (pl *planner) sameNSChain(m, p *node) bool {
	for q := m; q != nil && q.kind != KindRestorer; q = q.parent {
		if q.ns != m.ns {
			return false
		}
		if q == p {
			return true
		}
	}
	return false
}

// dependsOn reports whether creating m requires x to exist first: x is on
// m's chain of creators or image ancestors.
func (pl *planner) dependsOn(m, x *node) bool {
	seen := map[*node]bool{}
	var walk func(q *node) bool
	walk = func(q *node) bool {
		if q == nil || seen[q] {
			return false
		}
		seen[q] = true
		if q == x {
			return true
		}
		if q.how == howPlaceholder && walk(q.reaper) {
			return true
		}
		return walk(q.creator) || walk(q.parent)
	}
	return walk(m)
}

// mayDependOn is a conservative guess for a task not decided yet: it, or an
// ancestor, is in g's session (or leads a child that is).
func (pl *planner) mayDependOn(q, g *node) bool {
	for ; q != nil; q = q.parent {
		if q.sid == g.tag || q.t0sid == g.tag && q.decided {
			return true
		}
		if !q.decided {
			for _, c := range q.children {
				if c.sid == g.tag {
					return true
				}
			}
		}
	}
	return false
}
