package checkpoint

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/sockdiag"
)

// unixSockets knows the unix sockets of the checkpointer's network
// namespace, asked of sock_diag once, on the first socket descriptor met.
type unixSockets struct {
	byIno map[uint64]*sockdiag.UnixSocket
	err   error
	asked bool
}

// lookup returns what sock_diag said of socket ino, nil for a socket that is
// not a unix socket of our namespace (an inet socket, or one of another
// namespace: both lead outside the tree).
func (u *unixSockets) lookup(ino uint64) (*sockdiag.UnixSocket, error) {
	if !u.asked {
		u.asked = true
		u.byIno, u.err = sockdiag.Unix()
	}
	if u.err != nil {
		return nil, u.err
	}
	return u.byIno[ino], nil
}

// pairFault says why a unix socket of the tree cannot be kept as a pair:
// only connected pairs (socketpair, or a connection accepted from a
// listener) whose two ends the tree holds are. A listener, which clients
// from anywhere reach, and a socket connected to one outside lead outside
// the tree (external); an unconnected one is not supported. inTree tells
// whether the tree holds a socket.
func pairFault(s *sockdiag.UnixSocket, inTree func(uint64) bool) (what string, external bool) {
	switch {
	case s.State == unixTCPListen:
		return fmt.Sprintf("a listening unix socket (%s)", nameOf(s)), true
	case s.Peer == 0:
		return fmt.Sprintf("an unconnected unix socket (%s)", nameOf(s)), false
	case !inTree(s.Peer):
		return fmt.Sprintf("a unix socket connected to socket %d outside the tree", s.Peer), true
	}
	return "", false
}

const unixTCPListen = 10 // sk_state of a listening socket

func nameOf(s *sockdiag.UnixSocket) string {
	if s.Name == "" {
		return "unnamed"
	}
	return "bound to " + s.Name
}

// readSocket records one end of a pair: the descriptor fd of process pid
// is duplicated into the checkpointer (pidfd_getfd), and its receive queue
// is peeked without taking anything from it. The peek offset it moves on
// the way is put back.
func readSocket(pid, fd int, s *sockdiag.UnixSocket) (*image.Socket, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, os.NewSyscallError("pidfd_open", err)
	}
	sock, err := unix.PidfdGetfd(pidfd, fd, 0)
	unix.Close(pidfd)
	if err != nil {
		return nil, os.NewSyscallError("pidfd_getfd", err)
	}
	defer unix.Close(sock)

	out := &image.Socket{Ino: s.Ino, Peer: s.Peer, Type: uint32(s.Type), Shutdown: uint32(s.Shutdown)}
	opt := func(name int) int {
		v, e := unix.GetsockoptInt(sock, unix.SOL_SOCKET, name)
		if e != nil && err == nil {
			err = os.NewSyscallError("getsockopt", e)
		}
		return v
	}
	out.SndBuf, out.RcvBuf = uint32(opt(unix.SO_SNDBUF)), uint32(opt(unix.SO_RCVBUF))
	out.PeekOff = int32(opt(unix.SO_PEEK_OFF))
	passcred := opt(unix.SO_PASSCRED)
	if err != nil {
		return nil, err
	}
	if passcred != 0 {
		// Its queued messages carry their senders' credentials, which a
		// restore cannot forge.
		return nil, fmt.Errorf("unix socket %d passes credentials (SO_PASSCRED): %w", s.Ino, ErrUnsupported)
	}
	if err := unix.SetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return nil, os.NewSyscallError("setsockopt(SO_PEEK_OFF)", err)
	}
	out.Queue, err = peekQueue(sock, s)
	if e := unix.SetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_PEEK_OFF, int(out.PeekOff)); e != nil && err == nil {
		err = os.NewSyscallError("setsockopt(SO_PEEK_OFF)", e)
	}
	if err != nil {
		return nil, fmt.Errorf("unix socket %d: %w", s.Ino, err)
	}
	return out, nil
}

// peekQueue reads a socket's receive queue with MSG_PEEK from peek offset
// 0: a stream's bytes as one entry, else one entry per message. Descriptors
// in flight (SCM_RIGHTS) are refused: they are files the image would have to
// carry, and peeking installed copies of them here, which are closed.
func peekQueue(sock int, s *sockdiag.UnixSocket) ([][]byte, error) {
	var queue [][]byte
	var stream []byte
	total := 0
	buf := make([]byte, 256<<10)
	oob := make([]byte, unix.CmsgSpace(253*4))
	how := unix.MSG_PEEK | unix.MSG_DONTWAIT | unix.MSG_CMSG_CLOEXEC
	if s.Type != unix.SOCK_STREAM {
		how |= unix.MSG_TRUNC // the whole message's length, however long
	}
	for {
		n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, how)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			return nil, os.NewSyscallError("recvmsg(MSG_PEEK)", err)
		}
		if oobn > 0 {
			closeRights(oob[:oobn])
			return nil, fmt.Errorf("descriptors in flight in its queue: %w", ErrUnsupported)
		}
		if s.Type != unix.SOCK_STREAM && n > len(buf) {
			// A datagram longer than the buffer: MSG_TRUNC told its size.
			buf = make([]byte, n)
			continue
		}
		if n == 0 && (s.Type == unix.SOCK_STREAM || s.Shutdown&1 != 0) {
			break // end of stream, or nothing more to receive
		}
		if total += n; total > image.MaxSocketQueue || len(queue) >= image.MaxSocketMsgs {
			return nil, fmt.Errorf("more than %d bytes or %d messages queued: %w",
				image.MaxSocketQueue, image.MaxSocketMsgs, ErrUnsupported)
		}
		if s.Type == unix.SOCK_STREAM {
			stream = append(stream, buf[:n]...)
		} else {
			queue = append(queue, append(make([]byte, 0, n), buf[:n]...))
		}
	}
	if len(stream) > 0 {
		queue = [][]byte{stream}
	}
	return queue, nil
}

// closeRights closes the descriptors a peek received.
func closeRights(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		if fds, err := unix.ParseUnixRights(&m); err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}
}
