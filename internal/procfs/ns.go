package procfs

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// NSPath is /proc/<pid>/ns/<kind> ("pid", "mnt"...), which names the
// namespace (setns(2) takes it open).
func NSPath(pid int, kind string) string { return pidDir(pid) + "/ns/" + kind }

// PidNSChain returns the inode numbers of the pid namespaces of task tid,
// innermost first, walking up at most levels-1 parents: chain[0] is the
// namespace the task lives in, chain[k] its k-th ancestor. Inodes identify
// namespaces, so two tasks at the same depth in sibling namespaces differ.
func PidNSChain(tid, levels int) ([]uint64, error) {
	path := NSPath(tid, "pid")
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	chain := make([]uint64, 0, levels)
	for {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, os.NewSyscallError("fstat", err)
		}
		chain = append(chain, st.Ino)
		if len(chain) == levels {
			unix.Close(fd)
			return chain, nil
		}
		// NS_GET_PARENT gives the parent namespace as a new fd; it refuses
		// (EPERM) to go above the caller's own namespace.
		parent, err := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("%s: parent of level %d: %w", path, len(chain)-1, err)
		}
		fd = parent
	}
}
