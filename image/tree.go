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
		if b := taskRule(t.Tasks[:i], &task, ctx, byTag); b != nil {
			d.failAt(off, b.err, "%s: %s", taskName(i, &task, ctx), b.reason)
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
