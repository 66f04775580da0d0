package restart

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/inject"
)

// socketSet holds the unix socket pairs a restore made, by the inodes the
// image gave their ends, until every task has its ends.
type socketSet struct {
	byIno   map[uint64]int           // the restorer's descriptor of each end
	waiting map[uint64]*image.Socket // an end whose peer's record is still to come
	// capped: an unprivileged restore, whose buffer sizes stay within the
	// system's limits (net.core.wmem_max, rmem_max) as its own would.
	capped bool
}

// add takes one end's record; once both ends of a pair are known, the
// pair is made.
func (s *socketSet) add(rec *image.Socket) error {
	if s.byIno == nil {
		s.byIno, s.waiting = make(map[uint64]int), make(map[uint64]*image.Socket)
	}
	if _, dup := s.byIno[rec.Ino]; dup || s.waiting[rec.Ino] != nil {
		return fmt.Errorf("socket %d given twice", rec.Ino)
	}
	peer := s.waiting[rec.Peer]
	if peer == nil {
		s.waiting[rec.Ino] = rec
		return nil
	}
	delete(s.waiting, rec.Peer)
	if peer.Peer != rec.Ino || peer.Type != rec.Type {
		return fmt.Errorf("sockets %d and %d do not make a pair", peer.Ino, rec.Ino)
	}
	return s.makePair(peer, rec)
}

// makePair makes a connected pair with the ends' buffer sizes, puts each
// end's queued messages back by sending them from the other, then shuts
// down what was shut down and sets the peek offsets.
func (s *socketSet) makePair(a, b *image.Socket) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, int(a.Type)|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sockets %d and %d: %w", a.Ino, b.Ino, os.NewSyscallError("socketpair", err))
	}
	s.byIno[a.Ino], s.byIno[b.Ino] = fds[0], fds[1]
	ends := []struct {
		rec      *image.Socket
		fd, peer int
	}{{a, fds[0], fds[1]}, {b, fds[1], fds[0]}}
	for _, e := range ends {
		if err := setBuffers(e.fd, e.rec, s.capped); err != nil {
			return fmt.Errorf("socket %d: %w", e.rec.Ino, err)
		}
	}
	for _, e := range ends {
		if err := refill(e.peer, e.rec); err != nil {
			return fmt.Errorf("socket %d: %w", e.rec.Ino, err)
		}
	}
	for _, e := range ends {
		if err := finishSocket(e.fd, e.rec); err != nil {
			return fmt.Errorf("socket %d: %w", e.rec.Ino, err)
		}
	}
	return nil
}

// setBuffers sets the buffer sizes the image recorded. The kernel reports
// twice what was asked (its bookkeeping share). Unless capped, FORCE lifts
// the sysctl caps, as the original may have been given them by a
// privileged owner.
func setBuffers(fd int, rec *image.Socket, capped bool) error {
	snd, rcv := unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE
	if capped {
		snd, rcv = unix.SO_SNDBUF, unix.SO_RCVBUF
	}
	for _, o := range []struct {
		opt  int
		size uint32
	}{{snd, rec.SndBuf}, {rcv, rec.RcvBuf}} {
		if o.size == 0 {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt, int(o.size/2)); err != nil {
			return os.NewSyscallError("setsockopt(buffer size)", err)
		}
	}
	return nil
}

// refill sends an end's queued messages from its peer, in order.
func refill(from int, rec *image.Socket) error {
	for i, m := range rec.Queue {
		for sent := 0; sent < len(m) || len(m) == 0; {
			n, err := unix.SendmsgN(from, m[sent:], nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
			if err == unix.EAGAIN {
				return fmt.Errorf("message %d of its queue (%d bytes) does not fit its buffers", i, len(m))
			}
			if err != nil {
				return os.NewSyscallError("sendmsg", err)
			}
			if len(m) == 0 || rec.Type != image.SockStream {
				break // a message goes whole
			}
			sent += n
		}
	}
	return nil
}

// finishSocket shuts down what the image says was shut down and sets the
// peek offset; both would have stood in the way of refilling.
func finishSocket(fd int, rec *image.Socket) error {
	how := map[uint32]int{1: unix.SHUT_RD, 2: unix.SHUT_WR, 3: unix.SHUT_RDWR}
	if h, ok := how[rec.Shutdown]; ok {
		if err := unix.Shutdown(fd, h); err != nil {
			return os.NewSyscallError("shutdown", err)
		}
	}
	if rec.PeekOff >= 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, int(rec.PeekOff)); err != nil {
			return os.NewSyscallError("setsockopt(SO_PEEK_OFF)", err)
		}
	}
	return nil
}

// close drops the restorer's ends: the tasks hold their own.
func (s *socketSet) close() {
	for _, fd := range s.byIno {
		unix.Close(fd)
	}
}

// Layout of the task memory the injected recvmsg uses: struct msghdr,
// one struct iovec, the byte it receives, and room for one SCM_RIGHTS.
const (
	mhIov      = 56
	mhByte     = mhIov + 16
	mhControl  = mhByte + 8
	mhCtlLen   = 24 // CMSG_SPACE(sizeof(int))
	mhAreaSize = mhControl + mhCtlLen
)

// setSockets gives the task its socket ends. No call makes a descriptor in
// another process, so the task makes a socket pair of its own, the
// restorer takes one end of it (pidfd_getfd) and sends each socket end
// through it (SCM_RIGHTS), and the task receives them one by one and puts
// each at its number. The carrier's own descriptors sit above every number
// of the image meanwhile (above), and are closed at the end.
func (p *proc) setSockets(fds []image.FD, rsp uint64, above uint32, set *socketSet) error {
	area, err := inject.BorrowStack(p.tid, rsp, mhAreaSize)
	if err != nil {
		return err
	}
	defer area.Release()
	if _, err := p.syscall(unix.SYS_SOCKETPAIR, unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0, area.Addr); err != nil {
		return fmt.Errorf("carrier socketpair: %w", err)
	}
	b, err := area.Read(8)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	var carrier [2]uint64
	for i := range carrier {
		low := uint64(le.Uint32(b[4*i:]))
		carrier[i], err = p.syscall(unix.SYS_FCNTL, low, unix.F_DUPFD_CLOEXEC, uint64(above))
		if err == nil {
			_, err = p.syscall(unix.SYS_CLOSE, low)
		}
		if err != nil {
			return fmt.Errorf("carrier: %w", err)
		}
	}
	defer func() {
		p.syscall(unix.SYS_CLOSE, carrier[0])
		p.syscall(unix.SYS_CLOSE, carrier[1])
	}()
	pidfd, err := unix.PidfdOpen(p.tid, 0)
	if err != nil {
		return os.NewSyscallError("pidfd_open", err)
	}
	out, err := unix.PidfdGetfd(pidfd, int(carrier[1]), 0)
	unix.Close(pidfd)
	if err != nil {
		return os.NewSyscallError("pidfd_getfd", err)
	}
	defer unix.Close(out)

	msg := make([]byte, mhByte)
	le.PutUint64(msg[16:], area.Addr+mhIov)     // msg_iov
	le.PutUint64(msg[24:], 1)                   // msg_iovlen
	le.PutUint64(msg[32:], area.Addr+mhControl) // msg_control
	le.PutUint64(msg[40:], mhCtlLen)            // msg_controllen
	le.PutUint64(msg[mhIov:], area.Addr+mhByte) // iov_base
	le.PutUint64(msg[mhIov+8:], 1)              // iov_len
	for _, f := range fds {
		end, ok := set.byIno[f.Ino]
		if !ok {
			return fmt.Errorf("fd %d: socket %d has no SOCKET record before it", f.Num, f.Ino)
		}
		// O_NONBLOCK belongs to the open file, which every holder shares.
		if _, err := unix.FcntlInt(uintptr(end), unix.F_SETFL, int(f.Flags&unix.O_NONBLOCK)); err != nil {
			return fmt.Errorf("fd %d: %w", f.Num, os.NewSyscallError("fcntl(F_SETFL)", err))
		}
		if err := unix.Sendmsg(out, []byte{0}, unix.UnixRights(end), nil, 0); err != nil {
			return fmt.Errorf("fd %d: %w", f.Num, os.NewSyscallError("sendmsg", err))
		}
		if err := area.Write(msg); err != nil {
			return err
		}
		if _, err := p.syscall(unix.SYS_RECVMSG, carrier[0], area.Addr, unix.MSG_CMSG_CLOEXEC); err != nil {
			return fmt.Errorf("fd %d: receive: %w", f.Num, err)
		}
		ctl, err := area.Read(mhAreaSize)
		if err != nil {
			return err
		}
		cm := ctl[mhControl:]
		if le.Uint32(cm[8:]) != unix.SOL_SOCKET || le.Uint32(cm[12:]) != unix.SCM_RIGHTS {
			return fmt.Errorf("fd %d: the socket did not arrive", f.Num)
		}
		got := uint64(le.Uint32(cm[16:]))
		if got == uint64(f.Num) && f.Flags&unix.O_CLOEXEC == 0 {
			_, err = p.syscall(unix.SYS_FCNTL, got, unix.F_SETFD, 0)
		} else {
			err = p.place(got, f)
		}
		if err != nil {
			return fmt.Errorf("fd %d: %w", f.Num, err)
		}
	}
	return nil
}
