package sockdiag

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// inode returns the inode of a socket descriptor.
func inode(t *testing.T, fd int) uint64 {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestUnixPairsAndNames(t *testing.T) {
	sv, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sv[0])
	defer unix.Close(sv[1])
	if err := unix.Shutdown(sv[0], unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	l, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l)
	name := "ckptfs-sockdiag-test-" + strconv.Itoa(os.Getpid())
	if err := unix.Bind(l, &unix.SockaddrUnix{Name: "@" + name}); err != nil {
		t.Fatal(err)
	}

	socks, err := Unix()
	if err != nil {
		t.Fatal(err)
	}
	a, b := socks[inode(t, sv[0])], socks[inode(t, sv[1])]
	if a == nil || b == nil {
		t.Fatalf("socket pair not listed (%d sockets)", len(socks))
	}
	if a.Peer != b.Ino || b.Peer != a.Ino || a.Type != unix.SOCK_DGRAM {
		t.Errorf("pair: %+v and %+v", a, b)
	}
	// A datagram socket's shutdown is its own: the peer's stays open.
	if a.Shutdown != 2 || b.Shutdown != 0 {
		t.Errorf("shutdown: %d and %d, want 2 (send) and 0", a.Shutdown, b.Shutdown)
	}
	if s := socks[inode(t, l)]; s == nil || s.Name != "@"+name || s.Peer != 0 {
		t.Errorf("bound socket: %+v", s)
	}
}
