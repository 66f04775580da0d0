package checkpoint

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/fault"
)

// Two-phase checkpoints.
//
// Write streams an image: the tree is frozen while every byte is produced,
// and a reader that needs the image's size first (a filesystem, whose stat
// must be exact) has to spool it all somewhere before serving the first
// byte. For a large process that spool is most of the cost: writing 1 GiB
// into tmpfs takes several times as long as reading it from the process.
//
// Lay instead captures everything except the contents of pages, and of
// those only which are present (pagemap). That fixes the size of every
// record, so the image is laid out: a sequence of segments, each either
// literal bytes held in memory (headers, the small records) or "n bytes of
// process P's memory at addr". ReadAt serves any byte range from that
// layout, reading page segments from the still-frozen process straight into
// the caller's buffer, so the image is produced at the rate its memory can
// be read, and random access (two readers, dd, tar) works as on a file.
//
// Reading pages from the tree would keep it frozen until the last reader
// is gone (CRIU likewise keeps a tree stopped while it dumps it). Instead,
// Lay gives each process whose pages are deferred a copy-on-write copy of
// its memory before it lets the tree run on (copy.go); only a process
// that cannot be given one stays frozen until Thaw or Close. If a process
// held that way, or a copy, vanishes meanwhile (it was killed), reads fail
// with ErrGone and the rest of the tree is thawed at once.
//
// The TAIL carries a CRC32C of everything before it. Readers checksum
// what they read in pieces, anywhere and in parallel (PieceOf), and Sum
// joins the pieces that continue the checksum, so a sequential reader
// computes it as it goes; the TAIL hashes through the rest of the layout on
// demand when it is asked for before the checksum got there.

// ErrGone: a process of a frozen tree vanished before its pages were read,
// so the image cannot be completed. It stands for EIO.
var ErrGone = errors.New("checkpoint: process vanished while its tree was frozen")

// errClosed: the layout was read after Close.
var errClosed = errors.New("checkpoint: layout closed")

// errThawed: pages were asked for after Thaw.
var errThawed = errors.New("checkpoint: the tree was let go; its pages can no longer be read")

// Layout is an image laid out but not yet read, of a tree kept frozen.
type Layout struct {
	res     *Result
	f       *frozen
	segs    []segment // in image order, covering [0, tailOff)
	lit     []byte    // the bytes of the literal segments, in order
	tailOff int64     // where the TAIL starts
	size    int64

	hashing sync.Mutex // held while the checksum is completed for the TAIL
	mu      sync.Mutex // guards what follows
	crc     uint32     // CRC32C of the image's bytes [0, crcOff)
	crcOff  int64
	tail    []byte // the TAIL record, once the checksum is known
	err     error  // sticky: a process vanished, or Close was called

	thawed atomic.Bool
	thaw   sync.Once
	failed chan struct{} // closed when a process vanished
	fail1  sync.Once

	opt        *Options
	copies     map[int]*memCopy // by process: where its deferred pages are read
	held       map[int]bool     // processes frozen until Thaw: no copy could be made
	released   time.Time        // when every process was let go by Lay; zero if some are held
	stopHeld   func()           // ends the watch over the held processes
	stopCopies func()           // ends the watch over the copies
	stopPoll   chan struct{}    // ends pollCopies
	budget     budget           // what the snapshot duplicates (copy_limit.go)
	closed     sync.Once
}

type segKind uint8

const (
	segLiteral segKind = iota
	segPages
)

// segment is a byte range [off, off+n) of the image.
type segment struct {
	off, n int64
	kind   segKind
	lit    int64  // segLiteral: where its bytes start in Layout.lit
	pid    int    // segPages: whose memory
	addr   uint64 // segPages: at which address
}

// Lay checkpoints the subtree rooted at process root in two phases: it
// freezes the tree and captures all but the contents of pages, which the
// Layout's ReadAt then reads from the tree, kept frozen until Close. The
// capture is Write's own; only where page contents go differs. The
// Result's Frozen is the time the first phase took.
func Lay(ctx context.Context, root int, opt Options) (*Layout, error) {
	start := time.Now()
	f, err := freeze(ctx, root, &opt)
	if err != nil {
		return nil, err
	}
	b := &layoutBuilder{l: &Layout{f: f, tailOff: -1, budget: budget{limit: opt.copyLimit()}}}
	res, err := write(ctx, b, f, &opt)
	if err == nil && (b.l.tailOff < 0 || res.Size != b.off) {
		err = fmt.Errorf("checkpoint: layout of %d bytes for an image of %d", b.off, res.Size)
	}
	if err != nil {
		f.thaw()
		return nil, err
	}
	res.Frozen = f.frozenFor()
	l := b.l
	l.res, l.size, l.opt = res, res.Size, &opt
	l.failed = make(chan struct{})
	if err := l.letGo(ctx, &opt); err != nil {
		l.endCopies()
		f.thaw()
		return nil, err
	}
	res.Capture = time.Since(start)
	if err := l.watch(); err != nil {
		l.endCopies()
		f.thaw()
		return nil, err
	}
	l.stopPoll = make(chan struct{})
	if len(l.copies) > 0 {
		go l.pollCopies(l.stopPoll)
	}
	fault.Point("checkpoint-laid")
	return l, nil
}

// Result describes the image.
func (l *Layout) Result() *Result { return l.res }

// Size is the image's size in bytes.
func (l *Layout) Size() int64 { return l.size }

// Released is when Lay let the whole tree run on, every process's pages
// being copied; zero if some process is held frozen until Thaw.
func (l *Layout) Released() time.Time { return l.released }

// Thaw lets the processes still held run. Their pages can no longer be read
// after it, but the rest can: the small records, the pages of processes
// that have a copy, and the TAIL once Complete.
func (l *Layout) Thaw() {
	l.thaw.Do(func() {
		l.thawed.Store(true)
		l.stopHeld()
		l.f.letGo(func(int) bool { return true })
	})
}

// Close lets the tree run and ends the copies of its memory. Reads after
// Close fail.
func (l *Layout) Close() {
	l.mu.Lock()
	if l.err == nil {
		l.err = errClosed
	}
	l.mu.Unlock()
	l.Thaw()
	l.closed.Do(func() {
		close(l.stopPoll)
		l.stopCopies()
		l.endCopies()
		l.f.thaw() // and ends the tracer
	})
}

// Complete reports whether the whole image has been read in order (the
// TAIL's checksum is known): nothing more needs the tree.
func (l *Layout) Complete() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.crcOff >= l.tailOff
}

// Failed is closed when the image cannot be completed because a process of
// the tree vanished; Err then says which. The rest of the tree has been
// let go.
func (l *Layout) Failed() <-chan struct{} { return l.failed }

// Err returns the sticky error: why reads fail.
func (l *Layout) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// fail makes err sticky and, since the image can no longer be completed,
// lets the rest of the tree run at once.
func (l *Layout) fail(err error) error {
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
	l.fail1.Do(func() { close(l.failed) })
	l.Thaw()
	return err
}

// failRead fails the layout for a read of the tree's memory that failed.
func (l *Layout) failRead(err error) error {
	if err == errThawed {
		if e := l.Err(); e != nil {
			return e // thawed because it failed
		}
		return err
	}
	return l.fail(err)
}

// watch notices a held process of the tree, or a copy, that dies
// (SIGKILL is the one signal a stopped task cannot hold off): the image
// fails at once, the rest of the tree is let go, and its tracer (this
// process) no longer holds the dead process's pid from its parent.
func (l *Layout) watch() error {
	var held, copies []int
	for pid := range l.held {
		held = append(held, pid)
	}
	for _, mc := range l.copies {
		copies = append(copies, mc.c.Tid)
	}
	var err error
	l.stopHeld, err = watchPids(held, func(pid int) {
		l.fail(taskErr(pid, "frozen for an image", ErrGone))
	})
	if err != nil {
		return err
	}
	l.stopCopies, err = watchPids(copies, func(pid int) {
		for _, mc := range l.copies {
			if mc.c.Tid == pid {
				l.fail(taskErr(mc.tgid, fmt.Sprintf("its memory's copy %d", pid), ErrGone))
			}
		}
	})
	if err != nil {
		l.stopHeld()
		return err
	}
	return nil
}

// watchPids calls gone, once, with the first of pids found to have died,
// until stop is called. stop returns once the watch has ended; gone may
// call it.
func watchPids(pids []int, gone func(pid int)) (stop func(), err error) {
	if len(pids) == 0 {
		return func() {}, nil
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	fds := []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}}
	var mu sync.Mutex // held to close fds, and to write efd while it is open
	open := true
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range fds {
			unix.Close(int(p.Fd))
		}
		open = false
	}
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			closeAll()
			return nil, taskErr(pid, "watch", os.NewSyscallError("pidfd_open", err))
		}
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	ended := make(chan struct{})
	go func() {
		died := 0
	poll:
		for {
			if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
				break
			}
			if fds[0].Revents != 0 {
				break // stopped
			}
			for i := 1; i < len(fds); i++ {
				if fds[i].Revents != 0 {
					died = pids[i-1]
					break poll
				}
			}
		}
		closeAll()
		close(ended)
		if died != 0 {
			gone(died)
		}
	}()
	return func() {
		mu.Lock()
		if open {
			var one [8]byte
			one[0] = 1
			unix.Write(efd, one[:])
		}
		mu.Unlock()
		<-ended
	}, nil
}

// ReadAt reads the image's bytes at off into p. It returns io.EOF only
// when off is at or past the end. See Piece.
func (l *Layout) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("checkpoint: negative offset %d", off)
	}
	if off >= l.size {
		return 0, io.EOF
	}
	if err := l.Err(); err != nil {
		return 0, err
	}
	p = p[:min(int64(len(p)), l.size-off)]
	head := p[:max(0, min(int64(len(p)), l.tailOff-off))]
	if len(head) > 0 {
		if err := l.fill(head, off); err != nil {
			return 0, l.failRead(err)
		}
	}
	if len(head) < len(p) {
		tail, err := l.tailRecord()
		if err != nil {
			return 0, err
		}
		at := off + int64(len(head)) - l.tailOff
		copy(p[len(head):], tail[at:])
	}
	// A process that vanished while p was being filled may have left
	// part of it unread: never serve that.
	if err := l.Err(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// fill reads [off, off+len(p)), which lies before the TAIL, from the
// segments.
func (l *Layout) fill(p []byte, off int64) error {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].off+l.segs[i].n > off })
	for done := int64(0); done < int64(len(p)); i++ {
		if i >= len(l.segs) {
			return fmt.Errorf("checkpoint: no segment at offset %d of the image", off+done)
		}
		s := &l.segs[i]
		skip := off + done - s.off
		n := min(s.n-skip, int64(len(p))-done)
		dst := p[done : done+n]
		switch s.kind {
		case segLiteral:
			copy(dst, l.lit[s.lit+skip:])
		case segPages:
			if mc := l.copies[s.pid]; mc != nil {
				if err := mc.read(dst, s.addr+uint64(skip)); err != nil {
					return err
				}
				break
			}
			if l.thawed.Load() {
				return errThawed
			}
			if err := readMemory(dst, s.pid, s.addr+uint64(skip)); err != nil {
				return err
			}
			if l.thawed.Load() {
				return errThawed // the tree may have run while it was read
			}
		}
		done += n
	}
	return nil
}

// readMemory reads len(p) bytes of process pid's memory at addr. A process
// gone (killed while frozen) is ErrGone; any failure is an I/O error to
// whoever reads the image.
func readMemory(p []byte, pid int, addr uint64) error {
	for len(p) > 0 {
		local := []unix.Iovec{{Base: &p[0], Len: uint64(len(p))}}
		remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(p)}}
		n, err := unix.ProcessVMReadv(pid, local, remote, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ESRCH:
			return taskErr(pid, fmt.Sprintf("read memory at %#x", addr), ErrGone)
		case err != nil:
			// Not wrapped: whatever the errno, the reader gets EIO.
			return taskErr(pid, "read memory", fmt.Errorf("process_vm_readv at %#x: %v", addr, err))
		case n == 0:
			return taskErr(pid, "read memory", fmt.Errorf("nothing readable at %#x", addr))
		}
		p, addr = p[n:], addr+uint64(n)
	}
	return nil
}

// A Piece is the checksum of a range of the image's bytes. Readers compute
// pieces of what they read wherever it costs least (PieceOf), and hand them
// to Sum in order; a reader that goes front to back this way makes the
// TAIL free. Otherwise reading the TAIL hashes through what the pieces did
// not cover.
type Piece struct {
	off, n int64
	crc    uint32
}

// PieceOf checksums p, the image's bytes at off as ReadAt returned them.
func (l *Layout) PieceOf(p []byte, off int64) Piece {
	p = p[:max(0, min(int64(len(p)), l.tailOff-off))]
	return Piece{off: off, n: int64(len(p)), crc: image.Checksum(0, p)}
}

// Sum folds pc into the TAIL's checksum if it continues what that covers
// so far.
func (l *Layout) Sum(pc Piece) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pc.n > 0 && pc.off == l.crcOff {
		l.crc = image.ChecksumConcat(l.crc, pc.crc, pc.n)
		l.crcOff += pc.n
	}
}

// fold folds p, bytes before the TAIL at off, into the checksum if they
// continue it.
func (l *Layout) fold(p []byte, off int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	end := off + int64(len(p))
	if off <= l.crcOff && l.crcOff < end {
		l.crc = image.Checksum(l.crc, p[l.crcOff-off:])
		l.crcOff = end
	}
}

// tailRecord returns the TAIL, first hashing whatever part of the image no
// read has folded into the checksum yet.
func (l *Layout) tailRecord() ([]byte, error) {
	l.hashing.Lock()
	defer l.hashing.Unlock()
	var buf []byte
	defer func() {
		if buf != nil {
			pageBuffers.Put(buf)
		}
	}()
	for {
		l.mu.Lock()
		at, tail := l.crcOff, l.tail
		if tail == nil && at >= l.tailOff {
			l.tail = image.Tail(l.crc, l.tailOff)
			tail = l.tail
		}
		l.mu.Unlock()
		if tail != nil {
			return tail, nil
		}
		if buf == nil {
			buf = pageBuffers.Get().([]byte)
		}
		chunk := buf[:min(int64(len(buf)), l.tailOff-at)]
		if err := l.fill(chunk, at); err != nil {
			return nil, l.failRead(err)
		}
		l.fold(chunk, at)
	}
}

// layoutBuilder is the sink a Writer lays an image out into.
type layoutBuilder struct {
	l     *Layout
	off   int64 // bytes of the image laid out so far
	pid   int   // whose pages are deferred next
	pages pageCounter
}

var _ pageCounting = (*layoutBuilder)(nil)

func (b *layoutBuilder) pageBytes() int64 { return b.pages.bytes }

var _ pageDeferrer = (*layoutBuilder)(nil)

func (b *layoutBuilder) Write(p []byte) (int, error) {
	l := b.l
	if n := len(l.segs); n > 0 && l.segs[n-1].kind == segLiteral {
		l.segs[n-1].n += int64(len(p)) // its bytes end the arena
	} else {
		l.segs = append(l.segs, segment{off: b.off, n: int64(len(p)), kind: segLiteral, lit: int64(len(l.lit))})
	}
	l.lit = append(l.lit, p...)
	b.off += int64(len(p))
	b.pages.see(p)
	return len(p), nil
}

func (b *layoutBuilder) process(pid int) { b.pid = pid }

func (b *layoutBuilder) readFrozen(n int64) bool { return b.l.budget.take(n) }

func (b *layoutBuilder) DeferPages(addr uint64, n int64) error {
	if b.pid == 0 {
		return errors.New("checkpoint: pages deferred before their process was named")
	}
	b.l.segs = append(b.l.segs, segment{off: b.off, n: n, kind: segPages, pid: b.pid, addr: addr})
	b.off += n
	b.pages.skip(n)
	return nil
}

func (b *layoutBuilder) DeferTail(before int64) error {
	if before != b.off {
		return fmt.Errorf("checkpoint: TAIL deferred at %d, the layout is at %d", before, b.off)
	}
	b.l.tailOff = before
	b.off += image.TailSize
	return nil
}

// pageCounter counts the page contents of an image as its bytes go past,
// in order: it follows the records by their headers (type and length,
// docs/DESIGN.md §3) and adds up the payload of every PAGES record, less
// the address that opens it. Payload that never goes past (pages a layout
// defers) is skipped over. Counting from the stream keeps the count exact
// whichever way a page reached the image: deferred, or read at once (the
// pages of shared mappings).
type pageCounter struct {
	hdr   [image.HeaderSize]byte
	have  int   // bytes of the current record's header seen so far
	left  int64 // bytes of its payload still to come
	bytes int64 // page contents counted
}

// see follows p, the next bytes of the image.
func (c *pageCounter) see(p []byte) {
	for len(p) > 0 {
		if c.left > 0 {
			n := min(int64(len(p)), c.left)
			c.left -= n
			p = p[n:]
			continue
		}
		n := copy(c.hdr[c.have:], p)
		c.have += n
		p = p[n:]
		if c.have < image.HeaderSize {
			return
		}
		c.have = 0
		typ := binary.LittleEndian.Uint32(c.hdr[0:])
		c.left = int64(binary.LittleEndian.Uint32(c.hdr[4:])) - image.HeaderSize
		if typ == image.RecPages && c.left > 8 {
			c.bytes += c.left - 8
		}
		c.left = max(c.left, 0)
	}
}

// skip passes over n bytes of payload that do not go past.
func (c *pageCounter) skip(n int64) {
	c.left = max(c.left-n, 0)
}
