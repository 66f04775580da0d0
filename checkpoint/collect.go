package checkpoint

import (
	"fmt"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// taskInfo is what /proc tells of one frozen task.
type taskInfo struct {
	taskRef
	status *procfs.Status
	stat   *procfs.Stat
	state  byte     // /proc state before the freeze
	ns     []uint64 // pid namespace inodes from the root's level inwards
	// shares: what this process shares with its parent (see sharing.go).
	shares image.TaskFlags
}

// collect reads /proc for every task of the frozen tree. rootLevel is the
// root's namespace level as the checkpointer sees it (index into NSpid).
func collect(f *frozen) ([]*taskInfo, int, error) {
	infos := make([]*taskInfo, 0, len(f.tasks))
	rootLevel := -1
	nsCache := make(map[uint64][]uint64) // innermost inode → chain
	for _, t := range f.tasks {
		st, err := procfs.ReadTaskStatus(t.tgid, t.tid)
		if err != nil {
			return nil, 0, taskErr(t.tid, "read status", err)
		}
		stat, err := procfs.ReadTaskStat(t.tgid, t.tid)
		if err != nil {
			return nil, 0, taskErr(t.tid, "read stat", err)
		}
		if rootLevel < 0 {
			rootLevel = len(st.NSpid) - 1
		}
		levels := len(st.NSpid) - rootLevel
		if levels < 1 {
			return nil, 0, taskErr(t.tid, "read status",
				fmt.Errorf("task lives above the root's pid namespace (NSpid %v)", st.NSpid))
		}
		info := &taskInfo{taskRef: t, status: st, stat: stat, state: f.state[t]}
		if info.ns, err = nsChain(t.tid, levels, nsCache); err != nil {
			return nil, 0, taskErr(t.tid, "read pid namespaces", err)
		}
		infos = append(infos, info)
	}
	if err := findSharing(infos, f.seized); err != nil {
		return nil, 0, err
	}
	return infos, rootLevel, nil
}

// nsChain returns the namespaces of tid from the root's level inwards.
// Tasks of one namespace share a chain, so it is walked once per namespace.
func nsChain(tid, levels int, cache map[uint64][]uint64) ([]uint64, error) {
	inner, err := procfs.PidNSChain(tid, 1)
	if err != nil {
		return nil, err
	}
	if c, ok := cache[inner[0]]; ok && len(c) == levels {
		return c, nil
	}
	up, err := procfs.PidNSChain(tid, levels)
	if err != nil {
		return nil, err
	}
	if len(up) != levels {
		return nil, fmt.Errorf("found %d namespace levels, NSpid has %d", len(up), levels)
	}
	chain := make([]uint64, levels)
	for i, ino := range up {
		chain[levels-1-i] = ino
	}
	cache[inner[0]] = chain
	return chain, nil
}
