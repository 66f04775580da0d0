package plan

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/ckptfs/ckptfs/image"
)

// This file turns a live forest of the Model into image sections, by the
// rules a checkpoint follows, and compares forests.
//
// Order and tags: the root first, then depth first: a task, its threads,
// then its child processes, threads and children by increasing pid in the
// root's namespace. Pid objects are tagged from 1 in order of first
// encounter (a task's pid, then its group, then its session), namespaces
// likewise while walking each new pid's levels outermost first, so the
// root's namespace is tag 1. A group or session with no number in the
// root's namespace is TagAncestor; in subtree mode, the session or group of
// the root's parent, which the root inherited, is TagRoot.

// Snapshot describes the forest rooted at root as a checkpoint in the given
// mode would. Every task's parent must be in the tree (the root's excepted).
func Snapshot(root *Task, mode image.Mode) (Forest, error) {
	rootNS := root.NS
	var order []*Task
	var visit func(p *Task)
	byNr := func(ps []*Task) []*Task {
		out := append([]*Task(nil), ps...)
		sort.Slice(out, func(i, j int) bool { return out[i].Nr(rootNS) < out[j].Nr(rootNS) })
		return out
	}
	visit = func(p *Task) {
		order = append(order, p)
		for _, t := range byNr(p.threads) {
			if t.State != Reaped {
				order = append(order, t)
			}
		}
		for _, c := range byNr(p.children) {
			if c.State != Reaped {
				visit(c)
			}
		}
	}
	visit(root)
	inTree := map[*pidObj]bool{}
	for _, p := range order {
		inTree[p.pid] = true
	}
	// The session and group the root inherited from its parent (still the
	// root's, or kept by tasks forked before the root called setsid or
	// setpgid). Another pid no task of the tree holds is a dead leader's.
	fromAbove := func(o *pidObj) bool {
		pp := root.Leader.Parent
		return pp != nil && (o == pp.session || o == pp.pgrp)
	}
	f := Forest{Mode: mode, Zombies: map[image.Tag]int32{}}
	pidTags := map[*pidObj]image.Tag{}
	nsTags := map[*Namespace]image.Tag{}
	nsTag := func(ns *Namespace) image.Tag {
		if t, ok := nsTags[ns]; ok {
			return t
		}
		var parent image.Tag
		if ns != rootNS {
			parent = nsTags[ns.Parent]
		}
		f.Pids.NS = append(f.Pids.NS, image.PidNS{Parent: parent})
		t := image.Tag(len(f.Pids.NS))
		nsTags[ns] = t
		return t
	}
	tag := func(o *pidObj) image.Tag {
		if o.nrIn(rootNS) == 0 {
			return image.TagAncestor
		}
		if t, ok := pidTags[o]; ok {
			return t
		}
		if mode == image.ModeSubtree && !inTree[o] && fromAbove(o) {
			return image.TagRoot
		}
		var pid image.Pid
		for _, n := range o.nums[rootNS.Level:] {
			pid.Levels = append(pid.Levels, image.PidLevel{NS: nsTag(n.ns), Nr: n.nr})
		}
		f.Pids.Pids = append(f.Pids.Pids, pid)
		t := image.Tag(len(f.Pids.Pids))
		pidTags[o] = t
		return t
	}
	for i, p := range order {
		t := image.Task{Pid: tag(p.pid), Depth: uint32(p.NS.Level - rootNS.Level)}
		if i == 0 || p.Leader == root {
			t.PPid = image.TagAncestor // the root and its threads
		} else {
			pp, ok := pidTags[p.Leader.Parent.pid]
			if !ok {
				return Forest{}, fmt.Errorf("snapshot: parent of %s is outside the tree", p)
			}
			t.PPid = pp
		}
		t.TGid = pidTags[p.Leader.pid]
		t.PGid = tag(p.pgrp)
		t.Sid = tag(p.session)
		if i > 0 && p.Leader == p {
			if p.SharesFiles(p.Parent) {
				t.Flags |= image.TaskSharesFiles
			}
			if p.SharesFS(p.Parent) {
				t.Flags |= image.TaskSharesFS
			}
		}
		f.Tree.Tasks = append(f.Tree.Tasks, t)
		if p.State == Zombie {
			f.Zombies[t.Pid] = p.Status
		}
	}
	if err := snapshotSharing(order, f.Tree.Tasks); err != nil {
		return Forest{}, err
	}
	return f, nil
}

// snapshotSharing refuses, as a checkpoint does, the sharing of descriptor
// tables and fs structs that the TREE flags cannot describe: a thread
// holding its own, the root sharing with its parent outside the tree, and
// processes sharing one that no chain of parents explains (see
// checkpoint/sharing.go).
func snapshotSharing(order []*Task, tasks []image.Task) error {
	kinds := []struct {
		name   string
		flag   image.TaskFlags
		shares func(p, q *Task) bool
	}{{"descriptor table", image.TaskSharesFiles, (*Task).SharesFiles}, {"fs struct", image.TaskSharesFS, (*Task).SharesFS}}
	root := order[0]
	for _, k := range kinds {
		var seen []*Task // living leaders so far
		for i, p := range order {
			switch {
			case p.State != Alive:
				continue
			case p.Leader != p:
				if !k.shares(p, p.Leader) {
					return fmt.Errorf("snapshot: thread %s has a %s of its own", p, k.name)
				}
				continue
			case i == 0:
				if pp := root.Parent; pp != nil && k.shares(p, pp) {
					return fmt.Errorf("snapshot: the root shares its %s with its parent %s, outside the tree", k.name, pp)
				}
			case tasks[i].Flags&k.flag == 0:
				for _, q := range seen {
					if k.shares(p, q) {
						return fmt.Errorf("snapshot: %s shares its %s with %s, which is neither its parent nor sharing it through its parent", p, k.name, q)
					}
				}
			}
			seen = append(seen, p)
		}
	}
	return nil
}

// Canonical renumbers a forest's tags and orders its tasks as Snapshot
// would, so that two descriptions of the same forest become equal. It
// expects a forest Make accepts (tags defined, parents first).
func Canonical(f Forest) (Forest, error) {
	tasks := f.Tree.Tasks
	if len(tasks) == 0 {
		return Forest{}, fmt.Errorf("canonical: empty tree")
	}
	byPid := map[image.Tag]int{}
	for i, t := range tasks {
		byPid[t.Pid] = i
	}
	pidOf := func(t image.Tag) (image.Pid, error) {
		if t == 0 || int(t) > len(f.Pids.Pids) {
			return image.Pid{}, fmt.Errorf("canonical: pid tag %d undefined", t)
		}
		return f.Pids.Pids[t-1], nil
	}
	first := func(i int) int32 {
		p, _ := pidOf(tasks[i].Pid)
		if len(p.Levels) == 0 {
			return 0
		}
		return p.Levels[0].Nr
	}
	kids := map[image.Tag][]int{}
	threads := map[image.Tag][]int{}
	for i, t := range tasks[1:] {
		if t.TGid != t.Pid {
			threads[t.TGid] = append(threads[t.TGid], i+1)
		} else {
			kids[t.PPid] = append(kids[t.PPid], i+1)
		}
	}
	var order []int
	var visit func(i int)
	sorted := func(is []int) []int {
		out := append([]int(nil), is...)
		sort.Slice(out, func(a, b int) bool { return first(out[a]) < first(out[b]) })
		return out
	}
	visit = func(i int) {
		order = append(order, i)
		order = append(order, sorted(threads[tasks[i].Pid])...)
		for _, c := range sorted(kids[tasks[i].Pid]) {
			visit(c)
		}
	}
	visit(0)
	if len(order) != len(tasks) {
		return Forest{}, fmt.Errorf("canonical: %d of %d tasks reachable from the root", len(order), len(tasks))
	}
	out := Forest{Mode: f.Mode, Zombies: map[image.Tag]int32{}}
	pidTags := map[image.Tag]image.Tag{}
	nsTags := map[image.Tag]image.Tag{}
	var err error
	tag := func(t image.Tag) image.Tag {
		if t == image.TagAncestor || t == image.TagRoot {
			return t
		}
		if n, ok := pidTags[t]; ok {
			return n
		}
		p, e := pidOf(t)
		if e != nil {
			err = e
			return 0
		}
		var np image.Pid
		for _, lv := range p.Levels {
			nt, ok := nsTags[lv.NS]
			if !ok {
				var parent image.Tag
				if lv.NS != 1 && int(lv.NS) <= len(f.Pids.NS) {
					parent = nsTags[f.Pids.NS[lv.NS-1].Parent]
				}
				out.Pids.NS = append(out.Pids.NS, image.PidNS{Parent: parent})
				nt = image.Tag(len(out.Pids.NS))
				nsTags[lv.NS] = nt
			}
			np.Levels = append(np.Levels, image.PidLevel{NS: nt, Nr: lv.Nr})
		}
		out.Pids.Pids = append(out.Pids.Pids, np)
		n := image.Tag(len(out.Pids.Pids))
		pidTags[t] = n
		return n
	}
	for _, i := range order {
		t := tasks[i]
		nt := image.Task{Pid: tag(t.Pid), Depth: t.Depth}
		nt.PPid = image.TagAncestor
		if i != 0 {
			nt.PPid = tag(t.PPid)
		}
		nt.TGid = tag(t.TGid)
		nt.PGid = tag(t.PGid)
		nt.Sid = tag(t.Sid)
		nt.Flags = t.Flags
		out.Tree.Tasks = append(out.Tree.Tasks, nt)
		if st, ok := f.Zombies[t.Pid]; ok {
			out.Zombies[nt.Pid] = st
		}
	}
	return out, err
}

// SameForest reports how b differs from a, nil if they are the same forest:
// same pid numbers at every level and the same namespace shape, parents,
// thread groups, groups, sessions, zombies and what each process shares
// with its parent.
func SameForest(a, b Forest) error {
	ca, err := Canonical(a)
	if err != nil {
		return err
	}
	cb, err := Canonical(b)
	if err != nil {
		return err
	}
	if reflect.DeepEqual(ca, cb) {
		return nil
	}
	la := strings.Split(ca.String(), "\n")
	lb := strings.Split(cb.String(), "\n")
	for i := 0; i < len(la) || i < len(lb); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Errorf("forests differ: want %q, have %q", x, y)
		}
	}
	return fmt.Errorf("forests differ:\nwant %v\nhave %v", ca, cb)
}

// String prints a forest one task per line, pids as NSpid (outermost
// first) with the namespace tags after '@'.
func (f Forest) String() string {
	var b strings.Builder
	pid := func(t image.Tag) string {
		switch {
		case t == image.TagAncestor:
			return "ancestor"
		case t == image.TagRoot:
			return "root's"
		case int(t) > len(f.Pids.Pids):
			return fmt.Sprintf("tag%d?", t)
		}
		var s []string
		for _, lv := range f.Pids.Pids[t-1].Levels {
			s = append(s, fmt.Sprintf("%d@%d", lv.Nr, lv.NS))
		}
		return strings.Join(s, "/")
	}
	fmt.Fprintf(&b, "%s mode, namespaces", f.Mode)
	for i, ns := range f.Pids.NS {
		fmt.Fprintf(&b, " %d<%d", i+1, ns.Parent)
	}
	for _, t := range f.Tree.Tasks {
		fmt.Fprintf(&b, "\npid %s ppid %s tgid %s pgid %s sid %s", pid(t.Pid), pid(t.PPid), pid(t.TGid), pid(t.PGid), pid(t.Sid))
		if t.Flags != 0 {
			fmt.Fprintf(&b, " shares %s", t.Flags)
		}
		if st, ok := f.Zombies[t.Pid]; ok {
			fmt.Fprintf(&b, " zombie(%#x)", st)
		}
	}
	return b.String()
}
