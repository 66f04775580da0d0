package fs

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// callerTerminal opens the controlling terminal of the FUSE caller tid for
// a shell-job restore (shell-job/): the terminal a restored descriptor that
// led to one is given instead of /dev/null. It is found among the caller's
// own descriptors, one open for reading and writing on the device its
// /proc/<tid>/stat names as its terminal, and opened again through /proc:
// the tree gets no more than the caller holds (the daemon's /dev may not
// even be the caller's, in another mount namespace). The file's Name is
// the terminal's (/dev/pts/3), for the restore's status.
func callerTerminal(tid int) (*os.File, error) {
	stat, err := procfs.ReadStat(tid)
	if err != nil {
		return nil, fmt.Errorf("the writer (pid %d): %w", tid, err)
	}
	if stat.TTY == 0 {
		return nil, fmt.Errorf("the writer (pid %d) has no controlling terminal to give the tree: %w", tid, syscall.ENOTTY)
	}
	fds, err := procfs.FDs(tid)
	if err != nil {
		return nil, fmt.Errorf("the writer (pid %d): %w", tid, err)
	}
	for _, fd := range fds {
		path := procfs.FDPath(tid, fd)
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != stat.TTY {
			continue
		}
		info, err := procfs.ReadFDInfo(tid, fd)
		if err != nil || info.Flags&unix.O_ACCMODE != unix.O_RDWR {
			continue
		}
		nfd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("the writer's terminal (pid %d, fd %d): %w", tid, fd, &os.PathError{Op: "open", Path: path, Err: err})
		}
		name, err := procfs.FDTarget(tid, fd)
		if err != nil {
			name = path
		}
		return os.NewFile(uintptr(nfd), name), nil
	}
	return nil, fmt.Errorf("the writer (pid %d) holds no descriptor open for reading and writing on its terminal (device %d:%d): %w",
		tid, unix.Major(stat.TTY), unix.Minor(stat.TTY), syscall.ENOTTY)
}
