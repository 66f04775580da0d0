package plan

import (
	"github.com/ckptfs/ckptfs/image"
)

// Sharing of descriptor tables and fs structs.
//
// A process whose TREE entry says it shares its parent's descriptor table
// (image.TaskSharesFiles) or fs struct (image.TaskSharesFS) can only get
// it the way clone(2) gives it: created with CLONE_FILES or CLONE_FS by a
// process that holds that same object. Its parent does; so does, once the
// plan has run, any process that shares it with the parent through a
// chain of such flags, a placeholder made with the same flags by one of
// those, and a ghost that takes it from such a creator (a ghost's own
// table and fs struct do not matter: it exits). The planner lets only
// such creators make it (tryCreate), the clone steps carry the flags, and
// the model holds the objects, so the proof of every plan covers the
// sharing too. A session whose dead leader is a zombie rather than a ghost
// cannot hand it on: the plan cannot know the zombie (its TASK record
// comes later) and creates it as the task it was.
//
// The records of the processes that share one object all describe it; it
// is put back once, by the last of them in TREE order, when every sharer's
// memory is in place: a working directory or root changed earlier would
// misdirect the paths the later ones map their files by.

// shareFlags are the TREE flags and the clone flags that make them.
var shareFlags = []struct {
	task  image.TaskFlags
	clone CloneFlags
	name  string
}{{image.TaskSharesFiles, CloneFiles, "descriptor table"}, {image.TaskSharesFS, CloneFS, "fs struct"}}

// sharesText names the objects flags stand for, for messages.
func sharesText(flags image.TaskFlags) string {
	s := ""
	for _, f := range shareFlags {
		if flags&f.task != 0 {
			if s != "" {
				s += " and "
			}
			s += f.name
		}
	}
	if s == "" {
		return flags.String()
	}
	return s
}

// cloneShares are the clone flags that give a new process what flags say
// it shares.
func cloneShares(flags image.TaskFlags) CloneFlags {
	var c CloneFlags
	for _, f := range shareFlags {
		if flags&f.task != 0 {
			c |= f.clone
		}
	}
	return c
}

// taskFlags are a node's TREE flags (none for ghosts and placeholders).
func (n *node) taskFlags() image.TaskFlags {
	if n.kind != KindTask || n.task == nil {
		return 0
	}
	return n.task.Flags
}

// shareRoot is the process whose object of the kind flag names n holds
// once created as planned: the nearest ancestor that does not share it
// with its own parent (for a ghost that takes it, with its creator).
func shareRoot(n *node, flag image.TaskFlags) *node {
	for {
		switch {
		case n.taskFlags()&flag != 0 && n.parent != nil:
			n = n.parent
		case n.kind == KindGhost && n.handsOn&flag != 0 && n.creator != nil:
			n = n.creator
		default:
			return n
		}
	}
}

// canShare reports whether c can create x so that x shares what it must
// with its parent: c holds the same objects as that parent.
func canShare(c, x *node) bool {
	for _, f := range shareFlags {
		if x.taskFlags()&f.task != 0 && shareRoot(c, f.task) != shareRoot(x.parent, f.task) {
			return false
		}
	}
	return true
}

// restoredLater maps each process whose descriptor table or fs struct a
// later process of the tree shares to those flags: that later process puts
// the object back, not this one.
func restoredLater(tree *image.Tree) map[image.Tag]image.TaskFlags {
	out := map[image.Tag]image.TaskFlags{}
	for _, f := range shareFlags {
		root := map[image.Tag]image.Tag{} // a process's object, by the pid tag of its share root
		last := map[image.Tag]image.Tag{} // the last process holding it, by share root
		for _, t := range tree.Tasks {
			if t.TGid != t.Pid {
				continue
			}
			r := t.Pid
			if pr, ok := root[t.PPid]; ok && t.Flags&f.task != 0 {
				r = pr
			}
			root[t.Pid] = r
			last[r] = t.Pid
		}
		for _, t := range tree.Tasks {
			if r, ok := root[t.Pid]; ok && t.TGid == t.Pid && last[r] != t.Pid {
				out[t.Pid] |= f.task
			}
		}
	}
	return out
}
