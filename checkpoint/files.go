package checkpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/fileid"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// readFiles records the descriptors of process pid: regular files and
// directories (by path, with their identity, flags and offset), deleted
// files and memfds (their contents go in the image), character devices
// such as /dev/null, pipe ends, named pipes and unix sockets (by inode;
// fileTables decides which are the tree's), eventfds and epoll instances.
// What leads outside the tree — other sockets and terminals — is recorded
// as such (image.FileReplaced: what it was, its flags, and whether a
// terminal had the process's group in its foreground), or refused if
// replace is false; what
// ckptfs cannot bring back faithfully (io_uring, inotify, signalfd,
// timerfd ...) is refused: an image that restores wrongly is worse than
// none.
func readFiles(pid int, replace bool, socks *unixSockets, ids *fileIDs) ([]image.FD, error) {
	nums, err := procfs.FDs(pid)
	if err != nil {
		return nil, err
	}
	var fds []image.FD
	var tty *procfs.Stat // the process's terminal and groups, read once if needed
	for _, n := range nums {
		target, err := procfs.FDTarget(pid, n)
		if err != nil {
			if gone(err) {
				continue // closed meanwhile (a thread of it may still run)
			}
			return nil, err
		}
		info, err := procfs.ReadFDInfo(pid, n)
		if err != nil {
			if gone(err) {
				continue
			}
			return nil, err
		}
		f, outside, err := describeFD(pid, n, target, info, socks, ids)
		switch {
		case err != nil:
			return nil, err
		case outside != 0 && !replace:
			return nil, fmt.Errorf("fd %d is %s (%s): %w", n, externalNames[outside], target, ErrExternal)
		case outside == image.ExternalTerminal:
			if tty == nil {
				if tty, err = procfs.ReadStat(pid); err != nil {
					return nil, err
				}
			}
			fg := uint64(0)
			if tty.TTY != 0 && tty.TTY == f.Dev && tty.TPGid == tty.PGrp {
				fg = image.ExternalForeground
			}
			f = image.FD{Num: uint32(n), Kind: image.FileReplaced, Flags: info.Flags, Path: target,
				Extra: []uint64{image.ExternalTerminal, fg}}
		case outside != 0:
			f = image.FD{Num: uint32(n), Kind: image.FileReplaced, Flags: info.Flags, Path: target,
				Extra: []uint64{outside}}
		}
		fds = append(fds, f)
	}
	return fds, nil
}

// externalNames say what a descriptor leading outside the tree is.
var externalNames = map[uint64]string{
	image.ExternalTerminal: "a terminal",
	image.ExternalPipe:     "a pipe whose other end is outside the tree",
	image.ExternalFifo:     "a named pipe whose other end is outside the tree",
	image.ExternalSocket:   "a socket, not a unix one",
}

// describeFD says what descriptor n of process pid is, from its /proc
// link target and fdinfo; for one that leads outside the tree by its very
// kind (a terminal, a socket other than a unix one), it says which kind
// (image.External*) instead; for a terminal, f.Dev is its device number.
// A regular file's identity comes from ids.
func describeFD(pid, n int, target string, info *procfs.FDInfo, socks *unixSockets, ids *fileIDs) (f image.FD, outside uint64, err error) {
	f = image.FD{Num: uint32(n), Flags: info.Flags, Path: target}
	switch {
	case strings.HasPrefix(target, "pipe:["):
		f.Kind = image.FilePipe
		f.Ino, err = linkInode(target, "pipe:[")
		return f, 0, err
	case target == "anon_inode:[eventfd]" || target == "anon_inode:[eventpoll]":
		return anonFD(n, target, info), 0, nil
	case strings.HasPrefix(target, "socket:["):
		f.Kind = image.FileSocket
		if f.Ino, err = linkInode(target, "socket:["); err != nil {
			return f, 0, err
		}
		s, err := socks.lookup(f.Ino)
		if s == nil && err == nil {
			return f, image.ExternalSocket, nil
		}
		return f, 0, err
	case !strings.HasPrefix(target, "/"):
		return f, 0, fmt.Errorf("fd %d is %s: %w", n, target, ErrUnsupported)
	}
	var st unix.Stat_t
	if err := unix.Stat(procfs.FDPath(pid, n), &st); err != nil {
		return f, 0, &os.PathError{Op: "stat", Path: procfs.FDPath(pid, n), Err: err}
	}
	f.Kind, f.Pos, f.Dev, f.Ino = image.FileRegular, info.Pos, st.Dev, st.Ino
	deleted := strings.HasSuffix(target, " (deleted)")
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if deleted && st.Nlink == 0 {
			f.Kind = image.FileDeleted // its contents go in the image
		} else if !deleted {
			f.ID = ids.of(procfs.FDPath(pid, n), st.Dev, st.Ino, fileid.Stat(&st))
		}
	case unix.S_IFDIR:
	case unix.S_IFIFO:
		f.Kind = image.FileFifo // fileTables decides whether it is the tree's
	case unix.S_IFCHR:
		if isTerminal(st.Rdev) {
			f.Dev = st.Rdev
			return f, image.ExternalTerminal, nil
		}
		f.Kind = image.FileDevice
	default:
		return f, 0, fmt.Errorf("fd %d is %s, of file type %#o: %w", n, target, st.Mode&unix.S_IFMT, ErrUnsupported)
	}
	if deleted && f.Kind != image.FileDeleted {
		// Unlinked here but linked elsewhere, or not a regular file.
		return f, 0, fmt.Errorf("fd %d is %s, deleted but not a regular file without links: %w", n, target, ErrUnsupported)
	}
	return f, 0, nil
}

// isTerminal reports whether a character device is a terminal: a pty's
// side (Unix98 majors 136-143), a virtual console or serial line (major
// 4), /dev/tty or /dev/console (major 5, minors 0 and 1).
func isTerminal(rdev uint64) bool {
	major, minor := unix.Major(rdev), unix.Minor(rdev)
	return major >= 136 && major <= 143 || major == 4 || major == 5 && minor <= 1
}

// linkInode reads the inode number of a /proc fd link such as
// "pipe:[1234]".
func linkInode(target, prefix string) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(target, prefix), "]"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", target, err)
	}
	return n, nil
}

// readPipe copies the bytes buffered in a pipe without taking them: tee(2)
// from the pipe (reopened through /proc) into a pipe of our own.
func readPipe(pid, fd int, ino uint64) (*image.Pipe, error) {
	src, err := os.OpenFile(procfs.FDPath(pid, fd), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	size, err := unix.FcntlInt(src.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl(F_GETPIPE_SZ)", err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size); err != nil {
		return nil, os.NewSyscallError("fcntl(F_SETPIPE_SZ)", err)
	}
	n, err := unix.Tee(int(src.Fd()), p[1], size, unix.SPLICE_F_NONBLOCK)
	if err == unix.EAGAIN {
		n, err = 0, nil // empty
	}
	if err != nil {
		return nil, os.NewSyscallError("tee", err)
	}
	data := make([]byte, n)
	for got := 0; got < int(n); {
		m, err := unix.Read(p[0], data[got:])
		if err != nil {
			return nil, os.NewSyscallError("read", err)
		}
		got += m
	}
	return &image.Pipe{Ino: ino, Size: uint32(size), Data: data}, nil
}

// anonFD records an eventfd (its counter and mode) or an epoll instance
// (its watches, which restart adds once every other descriptor is back).
func anonFD(n int, target string, info *procfs.FDInfo) image.FD {
	f := image.FD{Num: uint32(n), Flags: info.Flags, Path: target}
	if target == "anon_inode:[eventfd]" {
		sem := uint64(0)
		if info.EventfdSemaphore {
			sem = 1
		}
		f.Kind, f.Extra = image.FileEventfd, []uint64{info.EventfdCount, sem}
		return f
	}
	f.Kind = image.FileEpoll
	for _, w := range info.EpollWatches {
		f.Extra = append(f.Extra, uint64(w.FD), uint64(w.Events), w.Data)
	}
	return f
}
