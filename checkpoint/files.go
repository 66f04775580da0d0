package checkpoint

import (
	"strings"
	"syscall"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// readFiles records the descriptors of process pid that restart can open
// again: regular files and directories (by path, with their identity, flags
// and offset) and character devices such as /dev/null. Other descriptors
// (pipes, sockets, terminals, anonymous inodes) are not recorded yet: the
// restored process does not have them.
func readFiles(pid int) ([]image.FD, error) {
	nums, err := procfs.FDs(pid)
	if err != nil {
		return nil, err
	}
	var fds []image.FD
	for _, n := range nums {
		target, err := procfs.FDTarget(pid, n)
		if err != nil {
			if gone(err) {
				continue // closed meanwhile (a thread of it may still run)
			}
			return nil, err
		}
		if !strings.HasPrefix(target, "/") || strings.HasSuffix(target, " (deleted)") {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(procfs.FDPath(pid, n), &st); err != nil {
			return nil, err
		}
		kind := uint32(image.FileRegular)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG, syscall.S_IFDIR:
		case syscall.S_IFCHR:
			if strings.HasPrefix(target, "/dev/pts") || strings.HasPrefix(target, "/dev/tty") {
				continue // terminals need their session: not yet
			}
			kind = image.FileDevice
		default:
			continue
		}
		info, err := procfs.ReadFDInfo(pid, n)
		if err != nil {
			return nil, err
		}
		fds = append(fds, image.FD{Num: uint32(n), Kind: kind, Flags: info.Flags, Pos: info.Pos,
			Dev: st.Dev, Ino: st.Ino, Path: target})
	}
	return fds, nil
}
