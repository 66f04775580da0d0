package image

// treeEntrySize is the size of one TREE entry.
const treeEntrySize = 28

// TREE payload (record type 102), little-endian:
//
//	u32 nr_tasks
//	nr_tasks × { u32 pid tag, u32 ppid tag, u32 tgid tag,
//	             u32 pgid tag, u32 sid tag, u32 depth, u32 flags }
//
// Tasks come parents before children and leaders before their threads;
// Tasks[0] is the root, whose ppid is TagAncestor (0). flags are TaskFlags
// (format version 2; version 1 entries had no flags word): only a process
// other than the root may carry them, and unknown bits are refused.
func appendTree(b []byte, t *Tree) []byte {
	start := len(b)
	b = appendRecord(b, RecTree)
	b = le.AppendUint32(b, uint32(len(t.Tasks)))
	for _, task := range t.Tasks {
		b = le.AppendUint32(b, uint32(task.Pid))
		b = le.AppendUint32(b, uint32(task.PPid))
		b = le.AppendUint32(b, uint32(task.TGid))
		b = le.AppendUint32(b, uint32(task.PGid))
		b = le.AppendUint32(b, uint32(task.Sid))
		b = le.AppendUint32(b, task.Depth)
		b = le.AppendUint32(b, uint32(task.Flags))
	}
	finishRecord(b, start)
	return b
}

// treeContext is what a TREE is checked against. Either part may be absent
// when a section is read on its own: without pids, tags cannot be resolved
// (only the tree's own structure is checked); without a header, the mode is
// unknown and TagRoot is allowed.
type treeContext struct {
	pids *pidsInfo // nil: no PIDS section
	mode Mode      // 0: no HEADER
}

// decodeTree decodes and validates a TREE payload against ctx.
func decodeTree(h recHeader, payload []byte, ctx treeContext) (*Tree, error) {
	dec := newDecoder(h, payload)
	d := &dec
	n := d.count("nr_tasks", MaxTasks, treeEntrySize)
	if d.err != nil {
		return nil, d.err
	}
	if n == 0 {
		d.failAt(d.base, ErrInvalid, "nr_tasks is 0: an image has at least the root task")
		return nil, d.err
	}
	if want := n * treeEntrySize; want != d.remaining() {
		d.failAt(d.base, ErrLength, "%d tasks take %d bytes, the record holds %d", n, want, d.remaining())
		return nil, d.err
	}
	t := &Tree{Tasks: make([]Task, n)}
	// index maps a task's pid tag to its position in Tasks. Tags are
	// dense when PIDS is known, so a slice does; otherwise a map.
	var byTag func(Tag) (int, bool)
	var setTag func(Tag, int)
	if ctx.pids != nil {
		idx := make([]int32, len(ctx.pids.pids.Pids)+1)
		byTag = func(tag Tag) (int, bool) {
			if tag == 0 || int(tag) >= len(idx) || idx[tag] == 0 {
				return 0, false
			}
			return int(idx[tag]) - 1, true
		}
		setTag = func(tag Tag, i int) { idx[tag] = int32(i) + 1 }
	} else {
		idx := make(map[Tag]int, n)
		byTag = func(tag Tag) (int, bool) { i, ok := idx[tag]; return i, ok }
		setTag = func(tag Tag, i int) { idx[tag] = i }
	}
	for i := range t.Tasks {
		off := d.off()
		task := Task{
			Pid:   Tag(d.u32("pid")),
			PPid:  Tag(d.u32("ppid")),
			TGid:  Tag(d.u32("tgid")),
			PGid:  Tag(d.u32("pgid")),
			Sid:   Tag(d.u32("sid")),
			Depth: d.u32("depth"),
			Flags: TaskFlags(d.u32("flags")),
		}
		if d.err != nil {
			return nil, d.err
		}
		checkTask(d, off, t.Tasks[:i], &task, ctx, byTag)
		if d.err != nil {
			return nil, d.err
		}
		t.Tasks[i] = task
		setTag(task.Pid, i)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return t, nil
}

// checkTask validates entry len(earlier) of a TREE against the tasks before
// it (every reference points backwards, so one pass suffices) and reports
// the first problem through d at offset off.
func checkTask(d *decoder, off int64, earlier []Task, task *Task, ctx treeContext, byTag func(Tag) (int, bool)) {
	i := len(earlier)
	fail := func(err error, format string, args ...any) {
		d.failAt(off, err, "task %d: "+format, append([]any{i}, args...)...)
	}
	// defined reports whether tag names a pid object.
	defined := func(tag Tag) bool {
		if tag == TagAncestor || tag == TagRoot {
			return false
		}
		return ctx.pids == nil || int(tag) <= len(ctx.pids.pids.Pids)
	}

	if !defined(task.Pid) {
		fail(ErrTag, "pid tag %d is not defined", task.Pid)
		return
	}
	if j, dup := byTag(task.Pid); dup {
		fail(ErrDuplicate, "pid tag %d already belongs to task %d", task.Pid, j)
		return
	}
	if u := task.Flags &^ TaskFlagsKnown; u != 0 {
		fail(ErrInvalid, "unknown flags %#x", uint32(u))
		return
	}
	if task.Depth > MaxPidLevel {
		fail(ErrNamespace, "depth %d exceeds the kernel's %d levels", task.Depth, MaxPidLevel)
		return
	}
	if ctx.pids != nil {
		if pd := ctx.pids.pids.Pids[task.Pid-1].Depth(); int(task.Depth) != pd {
			fail(ErrNamespace, "depth %d, but its pid tag %d has depth %d", task.Depth, task.Pid, pd)
			return
		}
	}

	// The thread group first: a leader names itself; a thread names an
	// earlier leader and shares its parent (so a thread of the root task
	// has ppid TagAncestor too) and its pid namespace.
	leader := -1
	if task.TGid != task.Pid {
		j, ok := byTag(task.TGid)
		switch {
		case !defined(task.TGid):
			fail(ErrTag, "tgid tag %d is not defined", task.TGid)
			return
		case !ok:
			fail(ErrTree, "tgid tag %d is not the pid of an earlier task (leaders come before threads)", task.TGid)
			return
		case earlier[j].TGid != earlier[j].Pid:
			fail(ErrTree, "tgid tag %d names task %d, which is itself a thread, not a leader", task.TGid, j)
			return
		case earlier[j].PPid != task.PPid:
			fail(ErrTree, "ppid tag %d differs from its leader task %d's ppid tag %d", task.PPid, j, earlier[j].PPid)
			return
		}
		leader = j
		if task.Flags != 0 {
			fail(ErrTree, "a thread carries flags %s: it shares everything with its leader task %d", task.Flags, j)
			return
		}
	}

	// The parent: outside the tree for the root (and its threads), an
	// earlier task for everyone else.
	parent := -1
	switch j, ok := byTag(task.PPid); {
	case i == 0:
		if task.PPid != TagAncestor {
			fail(ErrTree, "the root task's ppid tag is %d, want 0 (its parent is outside the tree)", task.PPid)
			return
		}
		if task.Depth != 0 {
			fail(ErrNamespace, "the root task has depth %d, want 0 (namespace 1 is the root's)", task.Depth)
			return
		}
		if task.Flags != 0 {
			fail(ErrTree, "the root task carries flags %s, but its parent is outside the tree", task.Flags)
			return
		}
	case task.PPid == TagAncestor:
		if leader != 0 {
			fail(ErrTree, "ppid tag 0: only the root task and its threads have their parent outside the tree")
			return
		}
	case !defined(task.PPid):
		fail(ErrTag, "ppid tag %d is not defined", task.PPid)
		return
	case !ok:
		fail(ErrTree, "ppid tag %d is not the pid of an earlier task (parents come before children)", task.PPid)
		return
	default:
		parent = j
	}

	for _, ref := range [...]struct {
		name string
		tag  Tag
	}{{"pgid", task.PGid}, {"sid", task.Sid}} {
		switch ref.tag {
		case TagAncestor, TagRoot:
			what := "ancestor (0)"
			if ref.tag == TagRoot {
				what = "root"
			}
			if ctx.mode == ModeContainer {
				fail(ErrTag, "%s tag is %s, which container mode does not allow", ref.name, what)
				return
			}
			if ref.tag == TagRoot && ctx.mode != 0 && ctx.mode != ModeSubtree {
				fail(ErrTag, "%s tag is root, which only subtree mode allows", ref.name)
				return
			}
		default:
			if !defined(ref.tag) {
				fail(ErrTag, "%s tag %d is not defined", ref.name, ref.tag)
				return
			}
		}
	}

	// Pid namespaces only nest downwards: a child lives in its parent's
	// namespace or in one created below it, and a thread in its leader's.
	if pi := ctx.pids; pi != nil {
		ns := pi.innermost(task.Pid)
		if parent >= 0 {
			if pns := pi.innermost(earlier[parent].Pid); !pi.within(ns, pns) {
				fail(ErrNamespace, "its pid namespace %d is neither its parent task %d's namespace %d nor below it",
					ns, parent, pns)
				return
			}
		}
		if leader >= 0 {
			if lns := pi.innermost(earlier[leader].Pid); ns != lns {
				fail(ErrNamespace, "a thread in pid namespace %d, but its leader task %d is in namespace %d",
					ns, leader, lns)
				return
			}
		}
	}
}
