package restart

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/seed"
)

// reopenFlags are the open flags that only matter when a file is created
// or first opened; reopening must not repeat them.
const reopenFlags = unix.O_CREAT | unix.O_EXCL | unix.O_TRUNC | unix.O_NOCTTY

// setFiles opens every recorded descriptor again in the task, at its number,
// with its flags and offset. A file named by path is found by the gate: it
// must still be the one the image saw (device and inode), for writing to
// another would lose data, and the restoring user must be allowed to open
// it. A pipe end is opened through /proc from the pipe the restorer made
// for it; a socket end is sent to the task (see setSockets).
//
// A descriptor that led outside the tree (image.FileReplaced) comes back as
// /dev/null, or, for a terminal when the restore is a shell job
// (Options.Terminal), as the restorer's terminal: terminal is the path the
// task opens it by, "" for none.
func (p *proc) setFiles(fds []image.FD, rsp uint64, g *gate, pipes *pipeSet, socks *socketSet, files *fileDataSet, terminal string) error {
	// Epoll instances last: their watches name the other descriptors.
	var epolls, sockets []image.FD
	var above uint32 // a number above every descriptor of the image
	inImage := make(map[uint32]bool, len(fds))
	for _, f := range fds {
		above = max(above, f.Num+1)
		inImage[f.Num] = true
	}
	// The seed came with stdin, stdout, stderr and its control socket (the
	// rest it closed): a process that had no such descriptor must not find
	// it open.
	for n := range uint32(seed.Inherited) {
		if !inImage[n] {
			if _, err := p.syscall(unix.SYS_CLOSE, uint64(n)); err != nil && !errors.Is(err, unix.EBADF) {
				return fmt.Errorf("close fd %d: %w", n, err)
			}
		}
	}
	for _, f := range fds {
		switch f.Kind {
		case image.FileEpoll:
			epolls = append(epolls, f)
			continue
		case image.FileSocket:
			sockets = append(sockets, f)
			continue
		case image.FileEventfd:
			if err := p.setEventfd(f); err != nil {
				return fmt.Errorf("fd %d (eventfd): %w", f.Num, err)
			}
			continue
		}
		var err error
		switch {
		case f.Kind == image.FileReplaced && terminal != "" && f.ExternalKind() == image.ExternalTerminal:
			// The restorer's own terminal, open already: no gate to pass.
			f.Path = terminal
			if err := p.setFile(f, rsp); err != nil {
				return fmt.Errorf("fd %d (the restorer's terminal): %w", f.Num, err)
			}
			continue
		case f.Kind == image.FileReplaced:
			// Led outside the tree: /dev/null in its place.
			f.Kind, f.Path = image.FileDevice, "/dev/null"
		}
		switch f.Kind {
		case image.FileRegular:
			f.Path, err = g.open(f.Path, accessOf(f.Flags), &expect{dev: f.Dev, ino: f.Ino, id: f.ID,
				live: true})
		case image.FileDevice:
			f.Path, err = g.open(f.Path, accessOf(f.Flags), nil)
		case image.FileFifo:
			// The gate checks every descriptor's access, the first one's
			// makes the pipe.
			if _, err = g.open(f.Path, accessOf(f.Flags), &expect{dev: f.Dev, ino: f.Ino}); err == nil {
				f.Path, err = pipes.path(f, g)
			}
		case image.FilePipe:
			f.Path, err = pipes.path(f, g)
		case image.FileDeleted:
			f.Path, err = files.path(f, g)
		}
		if err != nil {
			return fmt.Errorf("fd %d: %w", f.Num, err)
		}
		if err := p.setFile(f, rsp); err != nil {
			return fmt.Errorf("fd %d (%s): %w", f.Num, f.Path, err)
		}
	}
	if len(sockets) > 0 {
		if err := p.setSockets(sockets, rsp, above, socks); err != nil {
			return err
		}
	}
	for _, f := range epolls {
		if err := p.setEpoll(f, rsp); err != nil {
			return fmt.Errorf("fd %d (epoll): %w", f.Num, err)
		}
	}
	return nil
}

// place moves a descriptor the task just made to its recorded number.
func (p *proc) place(fd uint64, f image.FD) error {
	if fd == uint64(f.Num) {
		return nil
	}
	cloexec := uint64(0)
	if f.Flags&unix.O_CLOEXEC != 0 {
		cloexec = unix.O_CLOEXEC
	}
	if _, err := p.syscall(unix.SYS_DUP3, fd, uint64(f.Num), cloexec); err != nil {
		return fmt.Errorf("dup3 to its number: %w", err)
	}
	_, err := p.syscall(unix.SYS_CLOSE, fd)
	return err
}

// setEventfd makes the eventfd again with its counter and mode.
func (p *proc) setEventfd(f image.FD) error {
	count, sem := f.Extra[0], f.Extra[1]
	if count > 0xffffffff {
		return fmt.Errorf("counter %d does not fit eventfd2's initial value", count)
	}
	flags := uint64(f.Flags & (unix.O_CLOEXEC | unix.O_NONBLOCK))
	if sem != 0 {
		flags |= unix.EFD_SEMAPHORE
	}
	fd, err := p.syscall(unix.SYS_EVENTFD2, count, flags)
	if err != nil {
		return err
	}
	return p.place(fd, f)
}

// setEpoll makes the epoll instance again and adds its watches.
func (p *proc) setEpoll(f image.FD, rsp uint64) error {
	fd, err := p.syscall(unix.SYS_EPOLL_CREATE1, uint64(f.Flags&unix.O_CLOEXEC))
	if err != nil {
		return err
	}
	if err := p.place(fd, f); err != nil {
		return err
	}
	for i := 0; i+2 < len(f.Extra); i += 3 {
		target, events, data := f.Extra[i], f.Extra[i+1], f.Extra[i+2]
		ev := make([]byte, 12) // struct epoll_event, packed on x86-64
		binary.LittleEndian.PutUint32(ev, uint32(events))
		binary.LittleEndian.PutUint64(ev[4:], data)
		err := p.withStackArg(rsp, ev, func(addr uint64) error {
			_, err := p.syscall(unix.SYS_EPOLL_CTL, uint64(f.Num), unix.EPOLL_CTL_ADD, target, addr)
			return err
		})
		if err != nil {
			return fmt.Errorf("watch fd %d: %w", target, err)
		}
	}
	return nil
}

// setFile opens f.Path (the gate's, or the restorer's descriptor of a
// pipe or unlinked file) in the task and puts it at its number and offset.
func (p *proc) setFile(f image.FD, rsp uint64) error {
	var fd uint64
	err := p.withStackArg(rsp, append([]byte(f.Path), 0), func(addr uint64) (err error) {
		atFDCWD := int64(unix.AT_FDCWD)
		// O_NOCTTY: a controlling terminal comes with a session, never
		// from reopening a file.
		fd, err = p.syscall(unix.SYS_OPENAT, uint64(atFDCWD), addr, uint64(f.Flags&^reopenFlags|unix.O_NOCTTY), 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	if err := p.place(fd, f); err != nil {
		return err
	}
	if (f.Kind == image.FileRegular || f.Kind == image.FileDeleted) && f.Pos != 0 {
		if _, err := p.syscall(unix.SYS_LSEEK, uint64(f.Num), f.Pos, 0 /* SEEK_SET */); err != nil {
			return fmt.Errorf("seek to %d: %w", f.Pos, err)
		}
	}
	return nil
}

// pipeSet holds the pipes and named pipes of a restore, by their inode in
// the image, until every task has opened its ends. Each is made when a
// descriptor first needs it: only then is it known whether the PIPE record
// was a pipe's or a named pipe's.
type pipeSet struct {
	records map[uint64]*image.Pipe
	byIno   map[uint64][2]*os.File // read end, write end
}

// add keeps a PIPE record until its pipe is needed.
func (s *pipeSet) add(p *image.Pipe) error {
	if s.records == nil {
		s.records, s.byIno = make(map[uint64]*image.Pipe), make(map[uint64][2]*os.File)
	}
	if _, dup := s.records[p.Ino]; dup {
		return fmt.Errorf("pipe %d given twice", p.Ino)
	}
	s.records[p.Ino] = p
	return nil
}

// make makes the pipe of record p for descriptor f: a new pipe, or the
// named pipe at f's path, which must still be the one the image saw. The
// named pipe is held open for reading and writing, so that no task's open
// of it waits for the other end. Its size and buffered bytes go back.
func (s *pipeSet) make(p *image.Pipe, f image.FD, g *gate) ([2]*os.File, error) {
	var ends [2]*os.File
	if f.Kind == image.FileFifo {
		via, err := g.open(f.Path, accessOf(f.Flags), &expect{dev: f.Dev, ino: f.Ino})
		if err != nil {
			return ends, err
		}
		fifo, err := os.OpenFile(via, os.O_RDWR|unix.O_NONBLOCK, 0)
		if err != nil {
			return ends, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(fifo.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO ||
			st.Dev != f.Dev || st.Ino != f.Ino {
			fifo.Close()
			return ends, fmt.Errorf("the named pipe was replaced since the checkpoint (inode %d, was %d)", st.Ino, f.Ino)
		}
		ends = [2]*os.File{fifo, fifo}
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return ends, err
		}
		ends = [2]*os.File{r, w}
	}
	s.byIno[p.Ino] = ends
	if p.Size > 0 {
		if _, err := unix.FcntlInt(ends[1].Fd(), unix.F_SETPIPE_SZ, int(p.Size)); err != nil {
			return ends, fmt.Errorf("pipe %d: size %d: %w", p.Ino, p.Size, err)
		}
	}
	if _, err := ends[1].Write(p.Data); err != nil {
		return ends, fmt.Errorf("pipe %d: refill %d bytes: %w", p.Ino, len(p.Data), err)
	}
	return ends, nil
}

// path names the end f of a pipe so that a task can open it: the
// restorer's own descriptor, seen through /proc.
func (s *pipeSet) path(f image.FD, g *gate) (string, error) {
	ends, ok := s.byIno[f.Ino]
	if !ok {
		p, ok := s.records[f.Ino]
		if !ok {
			return "", fmt.Errorf("pipe %d has no PIPE record before it", f.Ino)
		}
		var err error
		if ends, err = s.make(p, f, g); err != nil {
			return "", err
		}
	}
	end := ends[0]
	if f.Flags&unix.O_ACCMODE == unix.O_WRONLY {
		end = ends[1]
	}
	return procfs.FDPath(os.Getpid(), int(end.Fd())), nil
}

// close drops the restorer's ends: the tasks hold their own.
func (s *pipeSet) close() {
	for _, ends := range s.byIno {
		ends[0].Close()
		if ends[1] != ends[0] {
			ends[1].Close()
		}
	}
}
