package fs

import (
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
// pattern (dd skip=, two readers on one handle) is served by plain reads.

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
type readAhead struct {
	lay *checkpoint.Layout

	mu  sync.Mutex // one request at a time
	end int64      // where the previous read ended
	run *prefetch  // the goroutine reading ahead, if any
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

func newReadAhead(lay *checkpoint.Layout) *readAhead {
	return &readAhead{lay: lay}
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
// dest, which starts reading ahead if the reader continues where it left
// off.
func (ra *readAhead) read(dest []byte, off int64) (fuse.ReadResult, error) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if p := ra.run; p != nil {
		if off == p.next && len(dest) == p.size {
			if c, ok := <-p.chunks; ok {
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
		}
		ra.halt() // not the reader it expected, or the end
	}
	n, err := ra.src(dest, off)
	if err != nil {
		return nil, err
	}
	ra.lay.Sum(ra.lay.PieceOf(dest[:n], off))
	if off == ra.end && n == len(dest) && n > 0 {
		ra.start(off+int64(n), n)
	}
	ra.end = off + int64(n)
	return fuse.ReadResultData(dest[:n]), nil
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
// nothing reads the snapshot after its handle is released.
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

// close ends reading ahead for good.
func (ra *readAhead) close() {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	ra.halt()
}

// chunkResult answers a request from a read-ahead buffer. It is written
// with writev (Slices), after which go-fuse calls Done and the buffer goes
// back to the pool. (A result without Slices would, with splicing
// disabled, be Done before it is written.)
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
