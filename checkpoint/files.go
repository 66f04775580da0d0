package checkpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// readFiles records the descriptors of process pid: regular files and
// directories (by path, with their identity, flags and offset), deleted
// files and memfds (their contents go in the image), character devices
// such as /dev/null, pipe ends, named pipes and unix sockets (by inode;
// fileTables decides which are the tree's), eventfds and epoll instances.
// What leads outside the tree — other sockets and terminals — is refused,
// or with replace recorded to be replaced by /dev/null at restore; what
// ckptfs cannot bring back faithfully (io_uring, inotify, signalfd,
// timerfd ...) is refused: an image that restores wrongly is worse than
// none.
func readFiles(pid int, replace bool, socks *unixSockets) ([]image.FD, error) {
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
		info, err := procfs.ReadFDInfo(pid, n)
		if err != nil {
			if gone(err) {
				continue
			}
			return nil, err
		}
		external := func(what string) error {
			if !replace {
				return fmt.Errorf("fd %d is %s (%s): %w", n, what, target, ErrExternal)
			}
			fds = append(fds, image.FD{Num: uint32(n), Kind: image.FileReplaced, Flags: info.Flags, Path: target})
			return nil
		}
		switch {
		case strings.HasPrefix(target, "pipe:["):
			nr, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(target, "pipe:["), "]"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("fd %d: %q: %w", n, target, err)
			}
			fds = append(fds, image.FD{Num: uint32(n), Kind: image.FilePipe, Flags: info.Flags, Ino: nr, Path: target})
			continue
		case target == "anon_inode:[eventfd]" || target == "anon_inode:[eventpoll]":
			fds = append(fds, anonFD(n, target, info))
			continue
		case strings.HasPrefix(target, "socket:["):
			nr, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("fd %d: %q: %w", n, target, err)
			}
			s, err := socks.lookup(nr)
			if err != nil {
				return nil, err
			}
			if s == nil {
				if err := external("a socket, not a unix one"); err != nil {
					return nil, err
				}
				continue
			}
			fds = append(fds, image.FD{Num: uint32(n), Kind: image.FileSocket, Flags: info.Flags, Ino: nr, Path: target})
			continue
		case !strings.HasPrefix(target, "/"):
			return nil, fmt.Errorf("fd %d is %s: %w", n, target, ErrUnsupported)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(procfs.FDPath(pid, n), &st); err != nil {
			return nil, err
		}
		kind := uint32(image.FileRegular)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			if strings.HasSuffix(target, " (deleted)") && st.Nlink == 0 {
				kind = image.FileDeleted // its contents go in the image
			}
		case syscall.S_IFDIR:
		case syscall.S_IFIFO:
			kind = image.FileFifo // fileTables decides whether it is the tree's
		case syscall.S_IFCHR:
			if strings.HasPrefix(target, "/dev/pts") || strings.HasPrefix(target, "/dev/tty") ||
				strings.HasPrefix(target, "/dev/console") {
				if err := external("a terminal"); err != nil {
					return nil, err
				}
				continue
			}
			kind = image.FileDevice
		default:
			return nil, fmt.Errorf("fd %d is %s, of file type %#o: %w", n, target, st.Mode&syscall.S_IFMT, ErrUnsupported)
		}
		if strings.HasSuffix(target, " (deleted)") && kind != image.FileDeleted {
			// Unlinked here but linked elsewhere, or not a regular file.
			return nil, fmt.Errorf("fd %d is %s, deleted but not a regular file without links: %w", n, target, ErrUnsupported)
		}
		fds = append(fds, image.FD{Num: uint32(n), Kind: kind, Flags: info.Flags, Pos: info.Pos,
			Dev: st.Dev, Ino: st.Ino, Path: target})
	}
	return fds, nil
}

// shared are the objects a process's descriptors share with others of the
// tree: their records go before the FILES record of the first process that
// uses them, so restart has made them when any process opens them.
type shared struct {
	Pipes   []image.Pipe
	Sockets []image.Socket
	Files   []image.FileData
}

// holders counts the descriptors of one pipe or socket in the tree.
type holders struct {
	readers, writers int
	first            int // tgid of the first process holding it
	fd               int // one of its descriptors there
}

// fileTables reads the descriptor table of every live process of the tree.
// A pipe is kept only if the tree holds both a read end and a write end of
// it, a unix socket only if the tree holds its peer; their buffered bytes
// are read once. What leads outside the tree is refused, or replaced by
// /dev/null if replace.
func fileTables(infos []*taskInfo, seized map[int]bool, replace bool) (map[int][]image.FD, map[int]shared, error) {
	tables := make(map[int][]image.FD)
	objs := make(map[int]shared)
	pipes := make(map[uint64]*holders)
	fifos := make(map[uint64]*holders)
	sockets := make(map[uint64]*holders)
	var pipeOrder, fifoOrder, sockOrder []uint64
	type fileKey struct{ dev, ino uint64 }
	seenFile := make(map[fileKey]bool)
	var socks unixSockets
	for _, t := range infos {
		if t.tid != t.tgid {
			continue // threads share their leader's table
		}
		if !seized[t.tid] {
			continue
		}
		fds, err := readFiles(t.tid, replace, &socks)
		if err != nil {
			return nil, nil, taskErr(t.tid, "read files", err)
		}
		tables[t.tgid] = fds
		for _, f := range fds {
			var m map[uint64]*holders
			var order *[]uint64
			switch f.Kind {
			case image.FilePipe:
				m, order = pipes, &pipeOrder
			case image.FileFifo:
				m, order = fifos, &fifoOrder
			case image.FileDeleted:
				if !seenFile[fileKey{f.Dev, f.Ino}] {
					seenFile[fileKey{f.Dev, f.Ino}] = true
					fd, err := readFileData(t.tgid, int(f.Num), f.Path)
					if err != nil {
						return nil, nil, taskErr(t.tgid, fmt.Sprintf("read deleted file fd %d", f.Num), err)
					}
					o := objs[t.tgid]
					o.Files = append(o.Files, *fd)
					objs[t.tgid] = o
				}
				continue
			case image.FileSocket:
				m, order = sockets, &sockOrder
			default:
				continue
			}
			h, ok := m[f.Ino]
			if !ok {
				h = &holders{first: t.tgid, fd: int(f.Num)}
				m[f.Ino] = h
				*order = append(*order, f.Ino)
			}
			switch f.Flags & syscall.O_ACCMODE {
			case syscall.O_WRONLY:
				h.writers++
			case syscall.O_RDWR:
				h.readers++
				h.writers++
			default:
				h.readers++
			}
		}
	}

	// A named pipe's bytes travel like a pipe's, in a PIPE record with its
	// inode.
	for _, kind := range []struct {
		m     map[uint64]*holders
		order []uint64
	}{{pipes, pipeOrder}, {fifos, fifoOrder}} {
		for _, ino := range kind.order {
			h := kind.m[ino]
			if h.readers == 0 || h.writers == 0 {
				continue // leads outside the tree: see below
			}
			p, err := readPipe(h.first, h.fd, ino)
			if err != nil {
				return nil, nil, taskErr(h.first, fmt.Sprintf("read pipe fd %d", h.fd), err)
			}
			o := objs[h.first]
			o.Pipes = append(o.Pipes, *p)
			objs[h.first] = o
		}
	}

	outside := make(map[uint64]string) // sockets leading outside, and what they are
	inTree := func(ino uint64) bool { return sockets[ino] != nil }
	done := make(map[uint64]bool)
	for _, ino := range sockOrder {
		h := sockets[ino]
		s := socks.byIno[ino]
		if what, external := pairFault(s, inTree); what != "" {
			if !external {
				return nil, nil, taskErr(h.first, "read files", fmt.Errorf("fd %d is %s: %w", h.fd, what, ErrUnsupported))
			}
			outside[ino] = what
			continue
		}
		if done[ino] {
			continue
		}
		// Both ends go with the first process holding either: this one.
		done[ino], done[s.Peer] = true, true
		o := objs[h.first]
		for _, end := range []uint64{ino, s.Peer} {
			eh := sockets[end]
			rec, err := readSocket(eh.first, eh.fd, socks.byIno[end])
			if err != nil {
				return nil, nil, taskErr(eh.first, fmt.Sprintf("read socket fd %d", eh.fd), err)
			}
			o.Sockets = append(o.Sockets, *rec)
		}
		objs[h.first] = o
	}

	// A pipe or socket whose other end is outside the tree leads outside it:
	// refused, or replaced by /dev/null.
	for tgid, fds := range tables {
		for i, f := range fds {
			var what string
			switch {
			case f.Kind == image.FilePipe && (pipes[f.Ino].readers == 0 || pipes[f.Ino].writers == 0):
				what = "a pipe (" + f.Path + ") whose other end is outside the tree"
			case f.Kind == image.FileFifo && (fifos[f.Ino].readers == 0 || fifos[f.Ino].writers == 0):
				what = "a named pipe (" + f.Path + ") whose other end is outside the tree"
			case f.Kind == image.FileSocket && outside[f.Ino] != "":
				what = outside[f.Ino]
			default:
				continue
			}
			if !replace {
				return nil, nil, taskErr(tgid, "read files", fmt.Errorf("fd %d is %s: %w", f.Num, what, ErrExternal))
			}
			fds[i] = image.FD{Num: f.Num, Kind: image.FileReplaced, Flags: f.Flags, Path: f.Path}
		}
	}
	return tables, objs, nil
}

// readPipe copies the bytes buffered in a pipe without taking them: tee(2)
// from the pipe (reopened through /proc) into a pipe of our own.
func readPipe(pid, fd int, ino uint64) (*image.Pipe, error) {
	src, err := os.OpenFile(procfs.FDPath(pid, fd), os.O_RDONLY|syscall.O_NONBLOCK, 0)
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
