package image

// RecSocket is one end of a unix socket pair of the tree: its type, options
// and the messages queued to it. Both ends' records come before the FILES
// record of the first process that holds either end.
const RecSocket = 303

// Unix socket types, as socket(2) numbers them.
const (
	SockStream    = 1
	SockDgram     = 2
	SockSeqpacket = 5
)

// Caps of a socket's receive queue in an image: no more than the kernel's
// largest buffers hold.
const (
	MaxSocketQueue = 32 << 20
	MaxSocketMsgs  = 1 << 16
)

// Socket is one end of a connected pair of unix sockets. Queue holds what
// waits in its receive queue: one entry per message for datagram and
// seqpacket sockets, the bytes in one entry for a stream.
type Socket struct {
	Ino, Peer      uint64 // socket inodes: this end and the other
	Type           uint32 // SockStream, SockDgram or SockSeqpacket
	Shutdown       uint32 // 1: no more receiving, 2: no more sending
	SndBuf, RcvBuf uint32 // as getsockopt reports them
	PeekOff        int32  // SO_PEEK_OFF, -1 when off
	Queue          [][]byte
}

// SOCKET payload: ino, peer (u64), type, shutdown, sndbuf, rcvbuf (u32),
// peek offset (i32), u32 count of messages, then per message u32 length and
// its bytes.
func appendSocket(b []byte, s *Socket) []byte {
	b = le.AppendUint64(b, s.Ino)
	b = le.AppendUint64(b, s.Peer)
	for _, x := range []uint32{s.Type, s.Shutdown, s.SndBuf, s.RcvBuf, uint32(s.PeekOff)} {
		b = le.AppendUint32(b, x)
	}
	b = le.AppendUint32(b, uint32(len(s.Queue)))
	for _, m := range s.Queue {
		b = le.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return b
}

func decodeSocket(h recHeader, payload []byte) (*Socket, error) {
	d := newDecoder(h, payload)
	s := &Socket{Ino: d.u64("socket inode"), Peer: d.u64("peer inode"), Type: d.u32("socket type"),
		Shutdown: d.u32("shutdown"), SndBuf: d.u32("sndbuf"), RcvBuf: d.u32("rcvbuf"), PeekOff: int32(d.u32("peek offset"))}
	n := d.count("queued messages", MaxSocketMsgs, 4)
	total := 0
	for range n {
		off := d.off()
		m := d.count("message length", MaxSocketQueue, 1)
		if total += m; d.err == nil && total > MaxSocketQueue {
			d.failAt(off, ErrInvalid, "more than %d bytes queued", MaxSocketQueue)
		}
		if d.err != nil {
			break
		}
		msg := make([]byte, m) // an empty datagram is a message too
		copy(msg, d.bytes(m, "message"))
		s.Queue = append(s.Queue, msg)
	}
	switch {
	case d.err != nil:
	case s.Type != SockStream && s.Type != SockDgram && s.Type != SockSeqpacket:
		d.fail(ErrInvalid, "socket %d: unknown type %d", s.Ino, s.Type)
	case s.Ino == s.Peer:
		d.fail(ErrInvalid, "socket %d is its own peer", s.Ino)
	case s.Shutdown > 3:
		d.fail(ErrInvalid, "socket %d: shutdown mode %d", s.Ino, s.Shutdown)
	case s.PeekOff < -1:
		d.fail(ErrInvalid, "socket %d: peek offset %d", s.Ino, s.PeekOff)
	case s.Type == SockStream && len(s.Queue) > 1:
		d.fail(ErrInvalid, "stream socket %d with %d messages", s.Ino, len(s.Queue))
	case s.SndBuf > 1<<30 || s.RcvBuf > 1<<30:
		d.fail(ErrInvalid, "socket %d: buffers of %d and %d bytes", s.Ino, s.SndBuf, s.RcvBuf)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return s, nil
}

// WriteSocket writes a SOCKET record for the current task.
func (w *Writer) WriteSocket(s *Socket) error { return w.writeSmall(RecSocket, appendSocket(nil, s)) }

// ReadSocket decodes the SOCKET record rec that NextRecord returned.
func (r *Reader) ReadSocket(rec Record) (*Socket, error) { return readSmall(r, rec, decodeSocket) }
