package fs

import (
	"context"
	"io"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// Read-ahead for a sequential reader of an image.
//
// A snapshot's pages are read from the frozen tree when the image is read
// (checkpoint.Layout), and that read is the slowest step of serving one.
// So that it is the only serial one, a reader that goes front to back (cat,
// cp, tar) gets a goroutine that reads the next chunks into buffers while
// the current reply is copied to the kernel: each request then finds its
// bytes ready, and is answered straight from the buffer (writev to
// /dev/fuse), which goes back to the pool once the kernel has it. Any other
// pattern (dd skip=, two readers on one handle) is served by plain reads,
// into buffers of the pool too.

// readAheadDepth is how many chunks may wait ready ahead of the reader.
// One goroutine reads ahead: with the replies' copies to the kernel and
// the reader itself, that keeps two CPUs busy; more only contend.
const readAheadDepth = 2

// chunkBuffers recycles the read-ahead buffers of every handle. Unlike a
// sync.Pool it keeps them across garbage collections: a fresh buffer costs
// a page fault per page on its first use, as much as reading it.
var chunkBuffers = make(chan []byte, 4*(readAheadDepth+2))

func getChunk(n int) []byte {
	select {
	case buf := <-chunkBuffers:
		if cap(buf) >= n {
			return buf[:n]
		}
	default:
	}
	return make([]byte, n, max(n, maxRead))
}

func putChunk(buf []byte) {
	select {
	case chunkBuffers <- buf[:cap(buf)]:
	default:
	}
}

// readAhead serves one open image file: it reads the snapshot's layout and
// hands it the checksum of every byte served, in the order of the file
// while the reader is sequential (see checkpoint.Piece). The goroutine
// reading ahead checksums what it reads, so that only joining the pieces
// is left to the path of the replies.
//
// A request waits for its bytes (a chunk being read ahead, or its own read,
// which may hash the rest of the image when it asks for the TAIL) only
// until it is interrupted: a reader killed meanwhile must be let die. What
// it waited for is not lost: a chunk stays for the request's retry, a read
// of its own returns its buffer to the pool when it ends.
type readAhead struct {
	lay layout

	turn  chan struct{}  // one request at a time: a lock a waiter can give up on
	end   int64          // where the previous read ended
	run   *prefetch      // the goroutine reading ahead, if any
	reads sync.WaitGroup // reads of abandoned requests, still running
}

// prefetch is one run of reading ahead, from next on in chunks of size.
type prefetch struct {
	next   int64      // where the next chunk handed out starts
	size   int        // the reader's request size
	chunks chan chunk // ready chunks, in order; closed when the goroutine ends
	stop   chan struct{}
}

type chunk struct {
	buf []byte
	sum checkpoint.Piece
	err error
}

func newReadAhead(lay layout) *readAhead {
	return &readAhead{lay: lay, turn: make(chan struct{}, 1)}
}

// src reads the image at off into p, returning 0 at the end.
func (ra *readAhead) src(p []byte, off int64) (int, error) {
	n, err := ra.lay.ReadAt(p, off)
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// read answers a request for len(dest) bytes at off: from the chunk read
// ahead for it if the reader is where it was expected, else by reading
// it, which starts reading ahead if the reader continues where it left
// off. It returns errInterrupted when ctx is done first.
func (ra *readAhead) read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, error) {
	select {
	case ra.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, errInterrupted
	}
	defer func() { <-ra.turn }()
	if p := ra.run; p != nil {
		if off == p.next && len(dest) == p.size {
			select {
			case c, ok := <-p.chunks:
				if ok {
					return ra.serve(p, c)
				}
			case <-ctx.Done():
				return nil, errInterrupted
			}
		}
		ra.halt() // not the reader it expected, or the end
	}
	buf, err := ra.readAt(ctx, len(dest), off)
	if err != nil {
		return nil, err
	}
	n := len(buf)
	ra.lay.Sum(ra.lay.PieceOf(buf, off))
	if off == ra.end && n == len(dest) && n > 0 {
		ra.start(off+int64(n), n)
	}
	ra.end = off + int64(n)
	return &chunkResult{buf: buf}, nil
}

// serve answers the expected request with chunk c.
func (ra *readAhead) serve(p *prefetch, c chunk) (fuse.ReadResult, error) {
	if c.err != nil {
		putChunk(c.buf)
		ra.halt()
		return nil, c.err
	}
	ra.lay.Sum(c.sum)
	p.next += int64(len(c.buf))
	ra.end = p.next
	return &chunkResult{buf: c.buf}, nil
}

// readAt reads size bytes at off into a buffer of the pool, on a goroutine
// of its own so that the request can give up waiting for it.
func (ra *readAhead) readAt(ctx context.Context, size int, off int64) ([]byte, error) {
	type result struct {
		n   int
		err error
	}
	buf := getChunk(size)
	done := make(chan result)
	gaveUp := make(chan struct{})
	ra.reads.Add(1)
	go func() {
		defer ra.reads.Done()
		n, err := ra.src(buf, off)
		select {
		case done <- result{n, err}:
		case <-gaveUp:
			putChunk(buf)
		}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			putChunk(buf)
			return nil, r.err
		}
		return buf[:r.n], nil
	case <-ctx.Done():
		close(gaveUp)
		return nil, errInterrupted
	}
}

// start reads ahead from off in chunks of size, until the end, an error,
// or halt.
func (ra *readAhead) start(off int64, size int) {
	p := &prefetch{next: off, size: size, chunks: make(chan chunk, readAheadDepth), stop: make(chan struct{})}
	ra.run = p
	go func() {
		defer close(p.chunks)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			buf := getChunk(size)
			n, err := ra.src(buf, off)
			if n == 0 && err == nil {
				putChunk(buf)
				return // the end
			}
			var sum checkpoint.Piece
			if err == nil && !ra.lay.Complete() {
				sum = ra.lay.PieceOf(buf[:n], off)
			}
			select {
			case p.chunks <- chunk{buf[:n], sum, err}:
			case <-p.stop:
				putChunk(buf)
				return
			}
			if err != nil {
				return
			}
			off += int64(n)
		}
	}()
}

// halt stops reading ahead and waits until the goroutine is gone, so that
// nothing reads the snapshot after its handle is released. Called with the
// turn held.
func (ra *readAhead) halt() {
	p := ra.run
	if p == nil {
		return
	}
	ra.run = nil
	close(p.stop)
	for c := range p.chunks {
		putChunk(c.buf)
	}
}

// close ends reading ahead for good, once the reads that interrupted
// requests left behind have ended too. (go-fuse releases a handle only
// when no request on it is being served, so the turn is free.)
func (ra *readAhead) close() {
	ra.turn <- struct{}{}
	defer func() { <-ra.turn }()
	ra.halt()
	ra.reads.Wait()
}

// chunkResult answers a request from a buffer of the pool, without copying
// it: it is written with writev (Slices), after which go-fuse calls Done
// and the buffer goes back to the pool. That order is go-fuse's, not an
// API promise: with DisableSplice, a result with a Slices method (its
// unexported withSlice interface) is left for the writer, which calls
// Done after the write (fuse/protocol-server.go, fuse/fusefd_linux.go in
// v2.12.1); a result without Slices would be flattened with Bytes and be
// Done before it is written, and the buffer reused under the reply. A copy
// into the request's buffer would not depend on that, but costs a memcpy
// of every MiB served on the path of the replies, which the read-ahead
// exists to keep short; so TestChunkResultDoneAfterWrite runs go-fuse's
// own server over a socket pair and fails loudly if an upgrade changes
// the order.
type chunkResult struct {
	buf []byte
}

var _ fuse.ReadResult = (*chunkResult)(nil)

func (r *chunkResult) Size() int { return len(r.buf) }

func (r *chunkResult) Bytes(buf []byte) ([]byte, fuse.Status) { return r.buf, fuse.OK }

func (r *chunkResult) Slices() ([][]byte, fuse.Status) { return [][]byte{r.buf}, fuse.OK }

func (r *chunkResult) Done() {
	if r.buf != nil {
		putChunk(r.buf)
		r.buf = nil
	}
}
