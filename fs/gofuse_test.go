package fs

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"testing"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// chunkResult hands go-fuse a buffer of the pool and takes it back in
// Done, which must therefore come after the reply was written. go-fuse
// does so for a result it can write with writev (one with a Slices
// method, its withSlice interface) when splicing is disabled, but that is
// how v2.12.1 is written (fuse/protocol-server.go leaves such a result to
// the writer; fuse/fusefd_linux.go calls Done in a defer after
// writeWithSlice), not a documented promise. This test holds go-fuse to
// it: go-fuse's own server, with the mount's options, serves a READ over
// a socket pair standing in for /dev/fuse (its /dev/fd/N mount point
// takes an open descriptor), answering with a result of chunkResult's
// methods whose Done checks that the reply is already out, and scribbles
// over the buffer as the pool's next user would. If an upgrade changes the
// order, this fails: then chunkResult must copy (or go-fuse offer a hook).
func TestChunkResultDoneAfterWrite(t *testing.T) {
	// The probe must be written the way a chunkResult is: by Slices, and
	// by nothing go-fuse prefers (its withReadv).
	var _ interface {
		Slices() ([][]byte, fuse.Status)
	} = (*chunkResult)(nil)
	if _, ok := any(&chunkResult{}).(interface {
		Readv([][]byte) (int, fuse.Status)
	}); ok {
		t.Fatal("chunkResult has a Readv method: go-fuse would copy it out some other way; update this test")
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("socketpair: %v", err)
	}
	kernel, dev := fds[0], fds[1]
	defer unix.Close(kernel)

	// The kernel's first message: INIT.
	send(t, kernel, &fuse.InitIn{
		InHeader:     fuse.InHeader{Length: uint32(unsafe.Sizeof(fuse.InitIn{})), Opcode: opInit, Unique: 1},
		Major:        7,
		Minor:        31,
		MaxReadAhead: maxRead,
	})
	opts := mountOptions(testConfig(t, 0))
	opts.DirectMount = false // the /dev/fd/N mount point: serve dev as it is
	// A datagram must fit the socket's buffer (wmem_default): a reply of
	// 64 KiB shows the order as well as one of maxRead.
	data := testImage(64 << 10)
	rawFS := &probeFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), kernel: kernel, data: data, written: make(chan bool, 1)}
	srv, err := fuse.NewServer(rawFS, fmt.Sprintf("/dev/fd/%d", dev), &opts)
	if err != nil {
		unix.Close(dev)
		t.Fatalf("go-fuse server on a socket pair: %v", err)
	}
	if hdr, _ := receive(t, kernel); hdr.Status != 0 || hdr.Unique != 1 {
		t.Fatalf("INIT reply: %+v", hdr)
	}
	served := make(chan struct{})
	go func() {
		srv.Serve()
		close(served)
	}()
	defer func() {
		// Serve ends when the "device" reads short: go-fuse logs that
		// once with the standard logger.
		out := log.Writer()
		log.SetOutput(io.Discard)
		defer log.SetOutput(out)
		unix.Shutdown(kernel, unix.SHUT_RDWR)
		waitClosed(t, "the end of the server", served)
	}()

	send(t, kernel, &fuse.ReadIn{
		InHeader: fuse.InHeader{Length: uint32(unsafe.Sizeof(fuse.ReadIn{})), Opcode: opRead, Unique: 2, NodeId: fuse.FUSE_ROOT_ID},
		Size:     uint32(len(data)),
	})
	// The reply is read only after Done looked for it.
	var writtenFirst bool
	within(t, "Done", func() { writtenFirst = <-rawFS.written })
	hdr, payload := receive(t, kernel)
	if hdr.Status != 0 || hdr.Unique != 2 {
		t.Fatalf("READ reply: %+v", hdr)
	}
	if !writtenFirst {
		t.Error("go-fuse called Done on a Slices result before writing the reply: chunkResult would hand the kernel a buffer already reused")
	}
	if !bytes.Equal(payload, data) {
		t.Error("the reply's bytes were changed by Done: go-fuse wrote the buffer after giving it back")
	}
}

// FUSE opcodes (include/uapi/linux/fuse.h); go-fuse keeps its own
// unexported.
const (
	opRead = 15
	opInit = 26
)

// probeFS answers every READ with a probeResult over a copy of data.
type probeFS struct {
	fuse.RawFileSystem
	kernel  int
	data    []byte
	written chan bool
}

func (p *probeFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	c := getChunk(len(p.data))
	copy(c, p.data)
	return &probeResult{chunkResult: &chunkResult{buf: c}, fs: p}, fuse.OK
}

// probeResult is a chunkResult whose Done first reports whether the reply
// is already on its way to the kernel, then spoils the buffer.
type probeResult struct {
	*chunkResult
	fs *probeFS
}

func (r *probeResult) Done() {
	if r.buf != nil {
		fds := []unix.PollFd{{Fd: int32(r.fs.kernel), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		select {
		case r.fs.written <- err == nil && n > 0:
		default:
		}
		for i := range r.buf {
			r.buf[i] = 0xee
		}
	}
	r.chunkResult.Done()
}

// send writes one request, as the kernel does, in one message.
func send[T any](t *testing.T, fd int, in *T) {
	t.Helper()
	b := unsafe.Slice((*byte)(unsafe.Pointer(in)), unsafe.Sizeof(*in))
	if _, err := unix.Write(fd, b); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// outHeader is struct fuse_out_header.
type outHeader struct {
	Length uint32
	Status int32
	Unique uint64
}

// receive reads one reply.
func receive(t *testing.T, fd int) (outHeader, []byte) {
	t.Helper()
	buf := make([]byte, 2*maxRead)
	n, err := unix.Read(fd, buf)
	if err != nil || n < int(unsafe.Sizeof(outHeader{})) {
		t.Fatalf("receive: %d bytes, %v", n, err)
	}
	hdr := *(*outHeader)(unsafe.Pointer(&buf[0]))
	if int(hdr.Length) != n {
		t.Fatalf("reply of %d bytes says %d", n, hdr.Length)
	}
	return hdr, buf[unsafe.Sizeof(hdr):n]
}
