package checkpoint

import (
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/kcmp"
)

// Sharing of descriptor tables and fs structs between tasks.
//
// clone(2) with CLONE_FILES or CLONE_FS makes the new task share its
// creator's descriptor table or fs struct (working directory, root,
// umask). Threads share them with their leader; processes may too.
// Restart can rebuild such sharing only the way it is made: a process that
// shares with its parent is cloned by it with the same flags. So the TREE
// records, per process, what it shares with its parent
// (image.TaskSharesFiles, image.TaskSharesFS), and the checkpoint refuses
// what that cannot describe: a thread that does not share its leader's,
// two processes sharing one that neither got from its parent (siblings
// made with CLONE_PARENT, or whose common parent unshared or died), and a
// root sharing with its parent, outside the tree.

// shareKinds pairs each kind kcmp compares with the flag that records it.
var shareKinds = []struct {
	kind kcmp.Kind
	flag image.TaskFlags
}{{kcmp.Files, image.TaskSharesFiles}, {kcmp.FS, image.TaskSharesFS}}

// findSharing sets the shares flags of every live process of the tree and
// refuses sharing that restart could not rebuild. seized are the tasks
// stopped (zombies are not, and hold no table).
func findSharing(infos []*taskInfo, seized map[int]bool) error {
	byTid := make(map[int]*taskInfo, len(infos))
	var procs []*taskInfo // live thread-group leaders, in tree order
	for _, t := range infos {
		if !seized[t.tid] {
			continue
		}
		byTid[t.tid] = t
		if t.tid == t.tgid {
			procs = append(procs, t)
		}
	}
	if len(procs) == 0 {
		return nil
	}
	root := infos[0]
	if _, err := kcmp.Compare(kcmp.Files, root.tid, root.tid); errors.Is(err, unix.ENOSYS) {
		// A kernel without CONFIG_KCMP cannot tell; the tree is taken as
		// sharing nothing between processes, as before kcmp was used.
		return nil
	}
	for _, k := range shareKinds {
		for _, t := range infos {
			if t.tid == t.tgid || byTid[t.tid] == nil || byTid[t.tgid] == nil {
				continue
			}
			same, err := kcmp.Same(k.kind, t.tid, t.tgid)
			if err != nil {
				return taskErr(t.tid, "compare with its leader", err)
			}
			if !same {
				return taskErr(t.tid, "compare with its leader", fmt.Errorf(
					"thread %d has a %s of its own, not its leader %d's: %w", t.tid, k.kind, t.tgid, ErrUnsupported))
			}
		}
		if byTid[root.tid] != nil {
			if err := rootSharing(root, k.kind); err != nil {
				return err
			}
		}
		for _, t := range procs {
			if t == root {
				continue
			}
			parent := byTid[t.status.PPid]
			if parent == nil {
				continue // a zombie's child is no more; tree order is checked by forest
			}
			same, err := kcmp.Same(k.kind, t.tid, parent.tid)
			if err != nil {
				return taskErr(t.tid, "compare with its parent", err)
			}
			if same {
				t.shares |= k.flag
			}
		}
		if err := sharedElsewhere(procs, k.kind, k.flag); err != nil {
			return err
		}
	}
	return nil
}

// rootSharing refuses a root that shares its object of kind k with its
// parent: the parent is outside the tree, and a restored root gets its
// own. A parent the checkpointer may not inspect is given the benefit of
// the doubt, as kcmp cannot tell then.
func rootSharing(root *taskInfo, k kcmp.Kind) error {
	pp := root.status.PPid
	if pp <= 0 {
		return nil
	}
	same, err := kcmp.Same(k, root.tid, pp)
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ESRCH):
		return nil
	case err != nil:
		return taskErr(root.tid, "compare with its parent", err)
	case same:
		return taskErr(root.tid, "compare with its parent", fmt.Errorf(
			"the root shares its %s with its parent %d, outside the tree: %w", k, pp, ErrUnsupported))
	}
	return nil
}

// sharedElsewhere groups the processes by the object of kind k they hold
// (a sort by kcmp's order) and refuses a group that is not one chain of
// processes each sharing with its parent: every member but one (the
// topmost, which got it from outside the group) must carry flag.
func sharedElsewhere(procs []*taskInfo, k kcmp.Kind, flag image.TaskFlags) error {
	if len(procs) < 2 {
		return nil
	}
	sorted := append([]*taskInfo(nil), procs...)
	var cmpErr error
	cmp := func(a, b *taskInfo) int {
		if cmpErr != nil || a == b {
			return 0
		}
		c, err := kcmp.Compare(k, a.tid, b.tid)
		if err != nil {
			cmpErr = taskErr(a.tid, fmt.Sprintf("compare with pid %d", b.tid), err)
		}
		return c
	}
	sort.SliceStable(sorted, func(i, j int) bool { return cmp(sorted[i], sorted[j]) < 0 })
	if cmpErr != nil {
		return cmpErr
	}
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && cmp(sorted[i], sorted[j]) == 0 {
			j++
		}
		if cmpErr != nil {
			return cmpErr
		}
		var top *taskInfo
		for _, t := range sorted[i:j] {
			if t.shares&flag != 0 {
				continue
			}
			if top != nil {
				// The sort is stable: top comes before t in tree order.
				return taskErr(t.tid, "compare with other processes", fmt.Errorf(
					"its %s is shared with pid %d, which is neither its parent nor sharing it through its parent: %w",
					k, top.tid, ErrUnsupported))
			}
			top = t
		}
		i = j
	}
	return nil
}
