package image

import "fmt"

// The rules of the PIDS and TREE sections, written once. The decoder
// applies them as it reads, and reports a broken one at the offset of the
// field; CheckForest applies them to sections built in memory (restart's
// planner takes its input through it). Each rule returns nil when it
// holds, else what it found.

// broken is a rule a section breaks: the sentinel kind and the reason.
type broken struct {
	err    error
	reason string
}

func breaks(err error, format string, args ...any) *broken {
	return &broken{err: err, reason: fmt.Sprintf(format, args...)}
}

// ---- PIDS ----

// nsRule checks the parent of namespace tag, and records the namespace's
// depth in info: tag 1 is the root's, every other's parent is defined
// before it, and the chain is no deeper than the kernel allows.
func nsRule(tag, parent Tag, info *pidsInfo) *broken {
	switch {
	case tag == 1 && parent != 0:
		return breaks(ErrNamespace, "namespace 1 (the root's) has parent %d, want 0", parent)
	case tag > 1 && (parent == 0 || parent >= tag):
		return breaks(ErrTag, "namespace %d: parent tag %d is not a namespace defined before it", tag, parent)
	case tag > 1:
		info.nsLevel[tag] = info.nsLevel[parent] + 1
		if info.nsLevel[tag] > MaxPidLevel {
			return breaks(ErrNamespace, "namespace %d is %d levels deep, the kernel allows %d", tag, info.nsLevel[tag], MaxPidLevel)
		}
	}
	return nil
}

// levelRule checks level k of pid tag, lv, given the level before it
// (unused for k == 0): the levels walk down the namespace chain from the
// root's, and numbers are positive. onNumber says the number is at fault,
// not the namespace.
func levelRule(p *Pids, tag Tag, k int, lv, prev PidLevel) (b *broken, onNumber bool) {
	switch {
	case lv.NS == 0 || int(lv.NS) > len(p.NS):
		return breaks(ErrTag, "pid %d level %d: namespace tag %d is not defined", tag, k, lv.NS), false
	case k == 0 && lv.NS != 1:
		return breaks(ErrNamespace, "pid %d level 0: namespace %d, want 1 (the root's)", tag, lv.NS), false
	case k > 0 && p.NS[lv.NS-1].Parent != prev.NS:
		return breaks(ErrNamespace, "pid %d level %d: namespace %d is not a child of namespace %d of level %d",
			tag, k, lv.NS, prev.NS, k-1), false
	case lv.Nr < 1:
		return breaks(ErrInvalid, "pid %d level %d: number %d is not positive", tag, k, lv.Nr), true
	}
	return nil, false
}

// numbersSeen finds a number given twice in one namespace.
type numbersSeen map[PidLevel]Tag

func (s numbersSeen) add(tag Tag, k int, lv PidLevel) *broken {
	if other, dup := s[lv]; dup {
		return breaks(ErrDuplicate, "pid %d level %d: number %d in namespace %d already belongs to pid %d",
			tag, k, lv.Nr, lv.NS, other)
	}
	s[lv] = tag
	return nil
}

// ---- TREE ----

// treeContext is what a TREE is checked against. Either part may be absent
// when a section is read on its own: without pids, tags cannot be resolved
// (only the tree's own structure is checked); without a header, the mode is
// unknown and TagRoot is allowed.
type treeContext struct {
	pids *pidsInfo // nil: no PIDS section
	mode Mode      // 0: no HEADER
}

// defined reports whether tag names a pid object.
func (ctx treeContext) defined(tag Tag) bool {
	if tag == TagAncestor || tag == TagRoot {
		return false
	}
	return ctx.pids == nil || int(tag) <= len(ctx.pids.pids.Pids)
}

// taskRule checks entry len(earlier) of a TREE against the tasks before
// it: every reference points backwards, so one pass suffices. byTag finds
// an earlier task by its pid tag.
func taskRule(earlier []Task, task *Task, ctx treeContext, byTag func(Tag) (int, bool)) *broken {
	b := identityRule(earlier, task, ctx, byTag)
	if b != nil {
		return b
	}
	leader, b := threadRule(earlier, task, ctx, byTag)
	if b != nil {
		return b
	}
	parent, b := parentRule(len(earlier), leader, task, ctx, byTag)
	if b != nil {
		return b
	}
	if b := groupRule(task, ctx); b != nil {
		return b
	}
	return namespaceRule(earlier, task, ctx, parent, leader)
}

// identityRule: the task's own pid tag is defined, unique, of the depth
// of its pid; its flags are known.
func identityRule(earlier []Task, task *Task, ctx treeContext, byTag func(Tag) (int, bool)) *broken {
	if !ctx.defined(task.Pid) {
		return breaks(ErrTag, "pid tag %d is not defined", task.Pid)
	}
	if j, dup := byTag(task.Pid); dup {
		return breaks(ErrDuplicate, "pid tag %d already belongs to task %d", task.Pid, j)
	}
	if u := task.Flags &^ TaskFlagsKnown; u != 0 {
		return breaks(ErrInvalid, "unknown flags %#x", uint32(u))
	}
	if task.Depth > MaxPidLevel {
		return breaks(ErrNamespace, "depth %d exceeds the kernel's %d levels", task.Depth, MaxPidLevel)
	}
	if ctx.pids != nil {
		if pd := ctx.pids.pids.Pids[task.Pid-1].Depth(); int(task.Depth) != pd {
			return breaks(ErrNamespace, "depth %d, but its pid tag %d has depth %d", task.Depth, task.Pid, pd)
		}
	}
	return nil
}

// threadRule: a leader names itself; a thread names an earlier leader and
// shares its parent (so a thread of the root task has ppid TagAncestor
// too), its process group and session, which belong to the process, and
// carries no flags (it shares everything with its leader). A thread is
// never pid 1 of its namespace: that number is its process's. It returns
// the leader's index, -1 for a leader.
func threadRule(earlier []Task, task *Task, ctx treeContext, byTag func(Tag) (int, bool)) (int, *broken) {
	if task.TGid == task.Pid {
		return -1, nil
	}
	j, ok := byTag(task.TGid)
	switch {
	case !ctx.defined(task.TGid):
		return -1, breaks(ErrTag, "tgid tag %d is not defined", task.TGid)
	case !ok:
		return -1, breaks(ErrTree, "tgid tag %d is not the pid of an earlier task (leaders come before threads)", task.TGid)
	case earlier[j].TGid != earlier[j].Pid:
		return -1, breaks(ErrTree, "tgid tag %d names task %d, which is itself a thread, not a leader", task.TGid, j)
	case earlier[j].PPid != task.PPid:
		return -1, breaks(ErrTree, "ppid tag %d differs from its leader task %d's ppid tag %d", task.PPid, j, earlier[j].PPid)
	case earlier[j].PGid != task.PGid || earlier[j].Sid != task.Sid:
		return -1, breaks(ErrTree, "process group and session tags %d and %d differ from its leader task %d's %d and %d",
			task.PGid, task.Sid, j, earlier[j].PGid, earlier[j].Sid)
	case task.Flags != 0:
		return -1, breaks(ErrTree, "a thread carries flags %s: it shares everything with its leader task %d", task.Flags, j)
	}
	if ctx.pids != nil {
		if l := ctx.pids.pids.Pids[task.Pid-1].Levels; l[len(l)-1].Nr == 1 {
			return -1, breaks(ErrTree, "a thread is pid 1 of its namespace, which only a process (its init) is")
		}
	}
	return j, nil
}

// parentRule: the root (and its threads) has its parent outside the
// tree, at depth 0 and with no flags; everyone else's parent is an earlier
// task. It returns the parent's index, -1 for none in the tree.
func parentRule(i, leader int, task *Task, ctx treeContext, byTag func(Tag) (int, bool)) (int, *broken) {
	j, ok := byTag(task.PPid)
	switch {
	case i == 0:
		if task.PPid != TagAncestor {
			return -1, breaks(ErrTree, "the root task's ppid tag is %d, want 0 (its parent is outside the tree)", task.PPid)
		}
		if task.Depth != 0 {
			return -1, breaks(ErrNamespace, "the root task has depth %d, want 0 (namespace 1 is the root's)", task.Depth)
		}
		if task.Flags != 0 {
			return -1, breaks(ErrTree, "the root task carries flags %s, but its parent is outside the tree", task.Flags)
		}
		return -1, nil
	case task.PPid == TagAncestor:
		if leader != 0 {
			return -1, breaks(ErrTree, "ppid tag 0: only the root task and its threads have their parent outside the tree")
		}
		return -1, nil
	case !ctx.defined(task.PPid):
		return -1, breaks(ErrTag, "ppid tag %d is not defined", task.PPid)
	case !ok:
		return -1, breaks(ErrTree, "ppid tag %d is not the pid of an earlier task (parents come before children)", task.PPid)
	}
	return j, nil
}

// groupRule: a process group and a session are pid objects, or one of
// linux-cr's special values: TagAncestor, one that lives in a namespace
// above the tree's (a container's init inherits its session and group from
// outside its namespace), and TagRoot, the root's own from above it, which
// only subtree mode has.
func groupRule(task *Task, ctx treeContext) *broken {
	for _, ref := range [...]struct {
		name string
		tag  Tag
	}{{"pgid", task.PGid}, {"sid", task.Sid}} {
		switch ref.tag {
		case TagAncestor:
		case TagRoot:
			if ctx.mode != 0 && ctx.mode != ModeSubtree {
				return breaks(ErrTag, "%s tag is root, which only subtree mode allows", ref.name)
			}
		default:
			if !ctx.defined(ref.tag) {
				return breaks(ErrTag, "%s tag %d is not defined", ref.name, ref.tag)
			}
		}
	}
	return nil
}

// namespaceRule: pid namespaces only nest downwards: a child lives in its
// parent's namespace or in one created below it, and a thread in its
// leader's.
func namespaceRule(earlier []Task, task *Task, ctx treeContext, parent, leader int) *broken {
	pi := ctx.pids
	if pi == nil {
		return nil
	}
	ns := pi.innermost(task.Pid)
	if parent >= 0 {
		if pns := pi.innermost(earlier[parent].Pid); !pi.within(ns, pns) {
			return breaks(ErrNamespace, "its pid namespace %d is neither its parent task %d's namespace %d nor below it",
				ns, parent, pns)
		}
	}
	if leader >= 0 {
		if lns := pi.innermost(earlier[leader].Pid); ns != lns {
			return breaks(ErrNamespace, "a thread in pid namespace %d, but its leader task %d is in namespace %d",
				ns, leader, lns)
		}
	}
	return nil
}

// taskName names task i of a TREE in a message: its index, and its pid
// numbers when the PIDS section is known ("task 2 (pid 3/1)", outermost
// first, as NSpid shows them).
func taskName(i int, task *Task, ctx treeContext) string {
	if ctx.pids == nil || !ctx.defined(task.Pid) {
		return fmt.Sprintf("task %d", i)
	}
	var b []byte
	for k, lv := range ctx.pids.pids.Pids[task.Pid-1].Levels {
		if k > 0 {
			b = append(b, '/')
		}
		b = fmt.Appendf(b, "%d", lv.Nr)
	}
	return fmt.Sprintf("task %d (pid %s)", i, b)
}

// ---- sections built in memory ----

// CheckForest checks a PIDS and a TREE section built in memory, not read
// from an image, against the rules an image's sections obey (the decoder's
// own): what a FormatError then names is the section and the entry, with
// no offset.
func CheckForest(mode Mode, p *Pids, t *Tree) error {
	info, err := checkPids(p)
	if err != nil {
		return err
	}
	ctx := treeContext{pids: info, mode: mode}
	if len(t.Tasks) == 0 {
		return &FormatError{Section: "TREE", Offset: -1, Reason: "no task: an image has at least the root task", Err: ErrInvalid}
	}
	fail := func(b *broken, i int) error {
		return &FormatError{Section: "TREE", Offset: -1, Reason: taskName(i, &t.Tasks[i], ctx) + ": " + b.reason, Err: b.err}
	}
	index := make(map[Tag]int, len(t.Tasks))
	byTag := func(tag Tag) (int, bool) { i, ok := index[tag]; return i, ok }
	for i := range t.Tasks {
		if b := taskRule(t.Tasks[:i], &t.Tasks[i], ctx, byTag); b != nil {
			return fail(b, i)
		}
		index[t.Tasks[i].Pid] = i
	}
	return nil
}

// checkPids checks a PIDS section built in memory.
func checkPids(p *Pids) (*pidsInfo, error) {
	fail := func(b *broken) error {
		return &FormatError{Section: "PIDS", Offset: -1, Reason: b.reason, Err: b.err}
	}
	if len(p.NS) == 0 || len(p.Pids) == 0 {
		return nil, fail(breaks(ErrInvalid, "%d namespaces and %d pids: an image has at least one of each", len(p.NS), len(p.Pids)))
	}
	info := &pidsInfo{pids: p, nsLevel: make([]int, len(p.NS)+1)}
	for i, ns := range p.NS {
		if b := nsRule(Tag(i+1), ns.Parent, info); b != nil {
			return nil, fail(b)
		}
	}
	seen := make(numbersSeen, len(p.Pids))
	for i, pid := range p.Pids {
		tag := Tag(i + 1)
		if len(pid.Levels) == 0 || len(pid.Levels) > MaxPidLevel+1 {
			return nil, fail(breaks(ErrNamespace, "pid %d: %d levels, want 1 to %d", tag, len(pid.Levels), MaxPidLevel+1))
		}
		for k, lv := range pid.Levels {
			var prev PidLevel
			if k > 0 {
				prev = pid.Levels[k-1]
			}
			if b, _ := levelRule(p, tag, k, lv, prev); b != nil {
				return nil, fail(b)
			}
			if b := seen.add(tag, k, lv); b != nil {
				return nil, fail(b)
			}
		}
	}
	return info, nil
}
