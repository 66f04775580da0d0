// Package sockdiag asks the kernel's sock_diag netlink interface about the
// unix sockets of the caller's network namespace: what /proc does not tell,
// above all which socket is connected to which.
package sockdiag

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall" // ParseNetlinkMessage, which x/sys/unix lacks

	"golang.org/x/sys/unix"
)

// UnixSocket is what sock_diag tells of one unix socket.
type UnixSocket struct {
	Ino      uint64
	Type     uint8  // SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET
	State    uint8  // TCP_ESTABLISHED (1) when connected, TCP_LISTEN (10) ...
	Peer     uint64 // inode of the connected peer, 0 if none
	Name     string // bound address; abstract names start with "@"
	Shutdown uint8  // RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2
}

// From linux/unix_diag.h.
const (
	udiagShowName = 0x01
	udiagShowPeer = 0x04

	unixDiagName     = 0 // attribute types
	unixDiagPeer     = 2
	unixDiagShutdown = 6

	sockDiagByFamily = 20
)

// Unix lists every unix socket of the network namespace, by inode.
func Unix() (map[uint64]*UnixSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, os.NewSyscallError("socket(NETLINK_SOCK_DIAG)", err)
	}
	defer unix.Close(fd)

	// struct nlmsghdr + struct unix_diag_req: family, protocol, pad,
	// states, ino, show, cookie[2].
	const reqLen = unix.NLMSG_HDRLEN + 24
	req := make([]byte, reqLen)
	le := binary.LittleEndian
	le.PutUint32(req[0:], reqLen)
	le.PutUint16(req[4:], sockDiagByFamily)
	le.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	le.PutUint32(req[8:], 1) // sequence
	body := req[unix.NLMSG_HDRLEN:]
	body[0] = unix.AF_UNIX
	le.PutUint32(body[4:], 0xffffffff)                   // every state
	le.PutUint32(body[12:], udiagShowName|udiagShowPeer) // shutdown always comes
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("sendto(sock_diag)", err)
	}

	out := make(map[uint64]*UnixSocket)
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, os.NewSyscallError("recvfrom(sock_diag)", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(le.Uint32(m.Data)); e != 0 {
						return nil, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
					}
				}
				continue
			}
			s, err := parseUnix(m.Data)
			if err != nil {
				return nil, err
			}
			out[s.Ino] = s
		}
	}
}

// parseUnix decodes struct unix_diag_msg (family, type, state, pad, ino,
// cookie[2]) and the attributes after it.
func parseUnix(b []byte) (*UnixSocket, error) {
	const msgLen = 16
	if len(b) < msgLen {
		return nil, fmt.Errorf("sock_diag: short message of %d bytes", len(b))
	}
	le := binary.LittleEndian
	s := &UnixSocket{Type: b[1], State: b[2], Ino: uint64(le.Uint32(b[4:]))}
	attrs := b[msgLen:]
	for len(attrs) >= unix.SizeofRtAttr {
		l := int(le.Uint16(attrs))
		typ := le.Uint16(attrs[2:])
		if l < unix.SizeofRtAttr || l > len(attrs) {
			return nil, fmt.Errorf("sock_diag: socket %d: attribute of length %d", s.Ino, l)
		}
		data := attrs[unix.SizeofRtAttr:l]
		switch typ {
		case unixDiagName:
			if len(data) > 0 && data[0] == 0 {
				s.Name = "@" + string(data[1:])
			} else {
				s.Name = string(data)
			}
		case unixDiagPeer:
			if len(data) >= 4 {
				s.Peer = uint64(le.Uint32(data))
			}
		case unixDiagShutdown:
			if len(data) >= 1 {
				s.Shutdown = data[0]
			}
		}
		attrs = attrs[min((l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1), len(attrs)):]
	}
	return s, nil
}
