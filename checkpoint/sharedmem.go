package checkpoint

import (
	"fmt"
	"strings"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// checkSharedMemory refuses shared anonymous memory (MAP_SHARED |
// MAP_ANONYMOUS, which /proc shows as "/dev/zero (deleted)") that two
// processes of the tree map: restart gives each process its own copy, so
// what one writes the other would no longer see. One process alone keeps
// its copy faithfully.
func checkSharedMemory(infos []*taskInfo, held map[int]int) error {
	type object struct {
		major, minor uint32
		ino          uint64
	}
	first := make(map[object]int) // the first process mapping it
	for _, t := range infos {
		if _, live := held[t.tid]; !live || t.tid != t.tgid {
			continue
		}
		maps, err := procfs.ReadMaps(t.tgid)
		if err != nil {
			return taskErr(t.tgid, "read maps", err)
		}
		for _, m := range maps {
			if !m.Shared() || !strings.HasPrefix(m.Path, "/dev/zero") {
				continue
			}
			o := object{m.Major, m.Minor, m.Inode}
			pid, seen := first[o]
			switch {
			case !seen:
				first[o] = t.tgid
			case pid != t.tgid:
				return taskErr(t.tgid, "read maps", fmt.Errorf(
					"shared anonymous memory %#x-%#x is shared with pid %d: %w", m.Start, m.End, pid, ErrUnsupported))
			}
		}
	}
	return nil
}
