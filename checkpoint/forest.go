package checkpoint

import (
	"fmt"

	"github.com/ckptfs/ckptfs/image"
)

// forest turns the collected tasks into the PIDS and TREE sections.
//
// Pid objects are keyed by their number in the checkpointer's namespace,
// where every pid the tree refers to is visible, and tagged in order of
// first encounter: for each task in tree order its pid, tgid, pgid, sid —
// linux-cr's order. A pgid or sid whose leader is not a task of the tree (a
// dead leader) is recorded with the numbers the referring task sees.
type forest struct {
	mode      image.Mode
	rootLevel int
	tasks     []*taskInfo
	byPid     map[int]*taskInfo // by tid at the checkpointer's level
	pids      image.Pids
	pidTag    map[int]image.Tag
	nsTag     map[uint64]image.Tag
}

func newForest(mode image.Mode, tasks []*taskInfo, rootLevel int) *forest {
	f := &forest{
		mode:      mode,
		rootLevel: rootLevel,
		tasks:     tasks,
		byPid:     make(map[int]*taskInfo, len(tasks)),
		pidTag:    make(map[int]image.Tag),
		nsTag:     make(map[uint64]image.Tag),
	}
	for _, t := range tasks {
		f.byPid[t.tid] = t
	}
	return f
}

// build computes both sections; in container mode it fails on the first
// reference to a pid outside the root's namespace.
func (f *forest) build() (*image.Pids, *image.Tree, error) {
	tree := &image.Tree{Tasks: make([]image.Task, 0, len(f.tasks))}
	root := f.tasks[0]
	if f.mode == image.ModeContainer && root.status.NSpid[f.rootLevel] != 1 {
		return nil, nil, taskErr(root.tid, "container mode",
			fmt.Errorf("%w: the root is pid %d in its namespace, not its init",
				ErrOutside, root.status.NSpid[f.rootLevel]))
	}
	for i, t := range f.tasks {
		var e image.Task
		e.Pid = f.taskPid(t)
		e.Depth = uint32(len(t.ns) - 1)
		if t.tid != t.tgid && f.byPid[t.tgid] != nil && t.tgid == f.tasks[0].tid {
			// A thread shares its leader's parent: for the root's
			// threads that parent is outside the tree.
			e.PPid = image.TagAncestor
		} else if i > 0 {
			parent, ok := f.byPid[t.status.PPid]
			if !ok {
				return nil, nil, taskErr(t.tid, "tree",
					fmt.Errorf("parent %d is not in the subtree", t.status.PPid))
			}
			e.PPid = f.taskPid(parent)
		}
		leader, ok := f.byPid[t.tgid]
		if !ok {
			return nil, nil, taskErr(t.tid, "tree", fmt.Errorf("thread group leader %d is not in the subtree", t.tgid))
		}
		e.TGid = f.taskPid(leader)
		if i > 0 && t.tid == t.tgid {
			e.Flags = t.shares
		}
		var err error
		if e.PGid, err = f.ref(t, "process group", t.status.NSpgid, root.status.NSpgid); err != nil {
			return nil, nil, err
		}
		if e.Sid, err = f.ref(t, "session", t.status.NSsid, root.status.NSsid); err != nil {
			return nil, nil, err
		}
		tree.Tasks = append(tree.Tasks, e)
	}
	return &f.pids, tree, nil
}

// taskPid returns the tag of a task's own pid object, defining it on first
// use with the task's numbers and namespaces from the root's level inwards.
func (f *forest) taskPid(t *taskInfo) image.Tag {
	return f.define(t.tid, t.status.NSpid[f.rootLevel:], t.ns)
}

// ref resolves a task's pgid or sid (nums: NSpgid or NSsid) to a tag.
func (f *forest) ref(t *taskInfo, what string, nums, rootNums []int) (image.Tag, error) {
	seen := nums[f.rootLevel:]
	if seen[0] == 0 {
		// The group or session lives above the root's namespace.
		if f.mode == image.ModeContainer {
			return 0, taskErr(t.tid, "container mode",
				fmt.Errorf("%w: %s %d lies outside the root's pid namespace", ErrOutside, what, nums[0]))
		}
		return image.TagAncestor, nil
	}
	key := nums[0]
	if leader, ok := f.byPid[key]; ok {
		return f.taskPid(leader), nil
	}
	if f.mode == image.ModeSubtree && key == rootNums[0] {
		// Inherited by the root from a leader above the tree.
		return image.TagRoot, nil
	}
	// A leader that is no task of the tree: dead, or (subtree mode) alive
	// elsewhere. Keep the levels at which the referring task sees it.
	n := 0
	for n < len(seen) && seen[n] != 0 {
		n++
	}
	return f.define(key, seen[:n], t.ns[:n]), nil
}

// define returns the tag of the pid object keyed by key, defining it (and
// the namespaces it lives in) on first encounter.
func (f *forest) define(key int, nums []int, ns []uint64) image.Tag {
	if tag, ok := f.pidTag[key]; ok {
		return tag
	}
	p := image.Pid{Levels: make([]image.PidLevel, len(nums))}
	var parent image.Tag
	for k, nr := range nums {
		tag, ok := f.nsTag[ns[k]]
		if !ok {
			f.pids.NS = append(f.pids.NS, image.PidNS{Parent: parent})
			tag = image.Tag(len(f.pids.NS))
			f.nsTag[ns[k]] = tag
		}
		p.Levels[k] = image.PidLevel{NS: tag, Nr: int32(nr)}
		parent = tag
	}
	f.pids.Pids = append(f.pids.Pids, p)
	tag := image.Tag(len(f.pids.Pids))
	f.pidTag[key] = tag
	return tag
}

// taskStates returns the per-task records in tree order.
func taskStates(infos []*taskInfo, tree *image.Tree) []image.TaskState {
	out := make([]image.TaskState, len(infos))
	for i, t := range infos {
		s := image.TaskState{Pid: tree.Tasks[i].Pid, State: t.state, Comm: t.stat.Comm}
		if t.state == 'Z' {
			s.ExitCode = t.stat.ExitCode
		}
		if len(s.Comm) > 15 {
			s.Comm = s.Comm[:15]
		}
		out[i] = s
	}
	return out
}
