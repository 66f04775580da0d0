package plan

import (
	"fmt"
	"sort"

	"github.com/ckptfs/ckptfs/image"
)

// Emission: walk the decisions from the root and write the steps, keeping
// track of each process's current parent, session and group.

func (pl *planner) emit() error {
	// Placeholder numbers start above every number the image uses in a
	// namespace, so that a placeholder never takes a pid a task still needs.
	for _, p := range pl.in.Pids.Pids {
		for _, lv := range p.Levels {
			if lv.Nr >= pl.free[lv.NS] {
				pl.free[lv.NS] = lv.Nr + 1
			}
		}
	}
	r := pl.nodes[Restorer]
	r.created, r.curSid, r.curPgid = true, keyOuter, keyOuter
	// Ghosts the restorer creates come first, since tasks may need to join
	// their groups early; one in a namespace not made yet waits for it.
	var first []*node
	for _, n := range pl.nodes[Restorer].normal {
		if n != pl.root {
			first = append(first, n)
		}
	}
	for _, n := range append(first, pl.root) {
		if err := pl.build(n); err != nil {
			return err
		}
	}
	// Leaders that ended in another group than their own move last, once
	// every member has joined theirs.
	for i := 0; i < len(pl.late); i++ { // a join may build more of them
		if err := pl.join(pl.late[i], pl.late[i].pgid); err != nil {
			return err
		}
	}
	var r2 refusal
	for _, n := range pl.nodes[1:] {
		if !n.created {
			r2.add("%s: cannot order its creation (its creator %s is never ready)", n, n.creator)
		}
	}
	for g, ms := range pl.pending {
		r2.add("%s: group %s is never created", ms[0], pl.keyName(g))
	}
	if err := r2.err(); err != nil {
		return err
	}
	// Exits: the latest created first, so no exiting process has children.
	for i := len(pl.order) - 1; i >= 0; i-- {
		n := pl.order[i]
		if n.kind == KindGhost || n.zombie {
			if err := pl.exit(n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (pl *planner) add(s Step) { pl.steps = append(pl.steps, s) }

// nsExists: the namespace's init has been created (the restorer's own
// namespace always exists).
func (pl *planner) nsExists(ns image.Tag) bool {
	if ns == pl.nodes[Restorer].ns {
		return true
	}
	init := pl.inits[ns]
	return init != nil && init.created
}

// setTid is a pid's clone3 set_tid: innermost level first.
func setTid(levels []image.PidLevel) []int32 {
	out := make([]int32, len(levels))
	for i, lv := range levels {
		out[len(levels)-1-i] = lv.Nr
	}
	return out
}

// build creates x and everything x creates.
func (pl *planner) build(x *node) error {
	if x.created {
		return fmt.Errorf("%w: %s created twice", ErrRefused, x)
	}
	if !x.isInit && !pl.nsExists(x.ns) {
		// Created by setns into a namespace whose init does not exist yet:
		// wait for it.
		pl.waitNS[x.ns] = append(pl.waitNS[x.ns], x)
		return nil
	}
	if err := pl.create(x); err != nil {
		return err
	}
	if x.isInit {
		// Its namespace exists now: create those that waited for it, before
		// x's own children, which may need them (a ghost's group).
		ws := pl.waitNS[x.ns]
		delete(pl.waitNS, x.ns)
		for _, y := range ws {
			if err := pl.build(y); err != nil {
				return err
			}
		}
	}
	for _, y := range pl.earlyOrder(x) {
		if g := y.needPgid; g != 0 && x.curPgid != g && pl.groupExists(g) {
			// y must inherit a group x is not in: x joins it first.
			if err := pl.join(x, g); err != nil {
				return err
			}
		}
		if err := pl.build(y); err != nil {
			return err
		}
	}
	switch {
	case x.sid == x.tag:
		pl.add(Setsid{Actor: x.id})
		x.curSid, x.curPgid = x.tag, x.tag
		if err := pl.groupCreated(x.tag); err != nil {
			return err
		}
	case x.pgid == x.tag || x.leadsGroup:
		if x.curPgid != x.tag {
			pl.add(Setpgid{Actor: x.id, Target: x.id, Group: x.tag})
			x.curPgid = x.tag
		}
		if err := pl.groupCreated(x.tag); err != nil {
			return err
		}
		if x.pgid != x.tag {
			pl.late = append(pl.late, x)
		}
	case x.curPgid != x.pgid:
		if pl.groupExists(x.pgid) {
			if err := pl.join(x, x.pgid); err != nil {
				return err
			}
		} else {
			pl.pending[x.pgid] = append(pl.pending[x.pgid], x)
		}
	}
	for _, y := range append(x.normal[:len(x.normal):len(x.normal)], x.externals...) {
		if y.needPgid != 0 && x.curPgid != y.needPgid && x.pgid == y.needPgid {
			// y must inherit x's group, which x has yet to join.
			pl.waitJoin[x] = append(pl.waitJoin[x], y)
			continue
		}
		if err := pl.build(y); err != nil {
			return err
		}
	}
	return nil
}

// earlyOrder sorts the children x creates in its early phase so that it
// changes group as little as possible: first those that must inherit the
// group x is born in, then those that need none (the leaders of groups that
// later ones need among them), then the others by the group they need.
func (pl *planner) earlyOrder(x *node) []*node {
	rank := func(y *node) int {
		switch y.needPgid {
		case x.curPgid:
			return 0
		case 0:
			return 1
		}
		return 2
	}
	out := append([]*node(nil), x.early...)
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := rank(out[i]), rank(out[j])
		if ri != rj {
			return ri < rj
		}
		return ri == 2 && out[i].needPgid < out[j].needPgid
	})
	return out
}

// create emits the steps that bring x into existence under its parent, and
// its threads.
func (pl *planner) create(x *node) error {
	c := x.creator
	if !c.created || c.exited {
		return fmt.Errorf("%w: %s: its creator %s does not exist yet", ErrRefused, x, c)
	}
	flags := cloneShares(x.taskFlags() | x.handsOn)
	if x.isInit {
		flags |= CloneNewPID
	}
	x.curSid, x.curPgid = c.curSid, c.curPgid
	switch x.how {
	case howDirect, howEarly:
		pl.add(Clone{Actor: c.id, Child: x.id, Flags: flags, NS: x.ns, SetTid: setTid(x.levels)})
		x.curParent = c
	case howCloneParent:
		pl.add(Clone{Actor: c.id, Child: x.id, Flags: flags | CloneParent, NS: x.ns, SetTid: setTid(x.levels)})
		x.curParent = c.curParent
	case howPlaceholder:
		h := &node{id: ProcID(len(pl.nodes)), kind: KindPlaceholder, ns: c.ns, creator: c,
			curParent: c, curSid: c.curSid, curPgid: c.curPgid, created: true}
		for _, lv := range c.levels {
			h.levels = append(h.levels, image.PidLevel{NS: lv.NS, Nr: pl.free[lv.NS]})
			pl.free[lv.NS]++
		}
		pl.nodes = append(pl.nodes, h)
		// The placeholder holds what x must share, to hand it on.
		pl.add(Clone{Actor: c.id, Child: h.id, Flags: cloneShares(x.taskFlags()), NS: h.ns, SetTid: setTid(h.levels)})
		pl.add(Clone{Actor: h.id, Child: x.id, Flags: flags, NS: x.ns, SetTid: setTid(x.levels)})
		if x.needSub {
			pl.add(Subreaper{Actor: x.reaper.id, On: true})
		}
		pl.add(Exit{Actor: h.id})
		pl.add(Wait{Actor: c.id, Child: h.id, Pid: pl.numberIn(h, c.ns)})
		if x.needSub {
			pl.add(Subreaper{Actor: x.reaper.id, On: false})
		}
		h.exited = true
		x.curParent = x.reaper
	}
	x.created = true
	pl.order = append(pl.order, x)
	for _, t := range x.threads {
		pl.add(Clone{Actor: x.id, Child: t.id, Flags: CloneThread, NS: t.ns, SetTid: setTid(t.levels)})
		t.created, t.curParent, t.curSid, t.curPgid = true, x.curParent, x.curSid, x.curPgid
	}
	return nil
}

// numberIn is n's pid in namespace ns (0 when not visible there).
func (pl *planner) numberIn(n *node, ns image.Tag) int32 {
	for _, lv := range n.levels {
		if lv.NS == ns {
			return lv.Nr
		}
	}
	return 0
}

// groupExists: some process that has not exited is in group g.
func (pl *planner) groupExists(g image.Tag) bool {
	if g == keyOuter {
		return true
	}
	for _, n := range pl.nodes {
		if n.created && !n.exited && !n.thread && n.curPgid == g {
			return true
		}
	}
	return false
}

// groupCreated lets the members waiting for group g join it.
func (pl *planner) groupCreated(g image.Tag) error {
	ms := pl.pending[g]
	delete(pl.pending, g)
	for _, m := range ms {
		if err := pl.join(m, g); err != nil {
			return err
		}
	}
	return nil
}

// join moves x into the existing group g: by x itself when x can name the
// group, else by its parent (same session, and the group visible there).
func (pl *planner) join(x *node, g image.Tag) error {
	if x.curPgid == g {
		return nil
	}
	step := Setpgid{Actor: x.id, Target: x.id, Group: g}
	switch p := x.curParent; {
	case pl.visible(g, x.ns):
		step.PGid = pl.nr(g, x.ns)
	case p != nil && p.kind != KindPlaceholder && !p.exited && p.curSid == x.curSid && pl.visible(g, p.ns):
		step.Actor, step.Pid, step.PGid = p.id, pl.numberIn(x, p.ns), pl.nr(g, p.ns)
	default:
		return fmt.Errorf("%w: %s: cannot join group %s: neither it nor its parent %s (in its session) can name that group from its namespace, and it was not born in it",
			ErrRefused, x, pl.keyName(g), x.curParent)
	}
	pl.add(step)
	x.curPgid = g
	for _, t := range x.threads {
		t.curPgid = g
	}
	ws := pl.waitJoin[x]
	delete(pl.waitJoin, x)
	for _, y := range ws {
		if err := pl.build(y); err != nil {
			return err
		}
	}
	return nil
}

// exit ends a ghost (reaped by its parent) or a zombie (left unreaped).
func (pl *planner) exit(n *node) error {
	for _, c := range pl.nodes {
		if c.curParent == n && c.created && !c.exited && !c.thread {
			return fmt.Errorf("%w: %s would exit with child %s", ErrRefused, n, c)
		}
	}
	if n.zombie {
		pl.add(Exit{Actor: n.id, Status: n.status})
		n.exited = true
		return nil
	}
	pl.add(Exit{Actor: n.id})
	pl.add(Wait{Actor: n.curParent.id, Child: n.id, Pid: pl.numberIn(n, n.curParent.ns)})
	n.exited = true
	return nil
}
