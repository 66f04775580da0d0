package fs

import (
	"context"
	"fmt"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// restoreWriter is the handle that created restore/<name>: the image's
// writer. Its writes feed the restart, its close (Flush) ends the image
// and waits for the restart's outcome, which that close() returns.
//
// A writer gone before the restart finished cancels it, and the restart
// then undoes what it made: a writer killed or interrupted in a write or in
// close (go-fuse closes the request's ctx on FUSE_INTERRUPT, which the
// kernel sends when the caller gets a signal; a caller killed while the
// daemon serves its request cannot die until it is answered), or a file
// released without a close that finished the restore. Cancelling answers
// at once; the teardown goes on in the background, and the outcome says
// "failed" with the cause, and "cancelled".
type restoreWriter struct {
	f *restoreFile
}

// restoreCancelled is why a writer's going away cancelled a restore.
type restoreCancelled string

func (c restoreCancelled) Error() string { return "restore cancelled: " + string(c) }

func (c restoreCancelled) Unwrap() error { return syscall.ECANCELED }

const (
	errWriteInterrupted   = restoreCancelled("the writer was interrupted")
	errFlushInterrupted   = restoreCancelled("the writer was interrupted while the restart finished")
	errReleasedUnfinished = restoreCancelled("the writer released the file before the restart finished")
)

// cancel stops the restart for cause, unless it already returned: its
// context is cancelled and its reads of the image fail with cause, so a
// write blocked on the pipe returns too.
func (f *restoreFile) cancel(cause error) {
	f.mu.Lock()
	if f.done {
		f.mu.Unlock()
		return
	}
	if f.first == nil {
		f.first, f.cancelled = cause, true
		f.cfg.Logger.Printf("restore/%s: %v", f.name, cause)
	}
	f.mu.Unlock()
	f.stop()
	f.pipe.CloseWithError(cause)
}

// take waits for the file's turn (a write, or the end of the image) until
// ctx is done.
func (f *restoreFile) take(ctx context.Context) bool {
	select {
	case f.turn <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (f *restoreFile) give() { <-f.turn }

var _ = (gofs.FileWriter)((*restoreWriter)(nil))

func (w *restoreWriter) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f := w.f
	if !f.take(ctx) {
		f.cancel(errWriteInterrupted)
		return 0, syscall.EINTR
	}
	defer f.give()
	f.mu.Lock()
	closed, size := f.closed, f.size
	f.mu.Unlock()
	if closed {
		return 0, syscall.EBADF
	}
	if off != size {
		// The restart consumes the image as a stream.
		f.cfg.Logger.Printf("restore/%s: write at %d, expected %d: images must be written in order", f.name, off, size)
		return 0, syscall.ESPIPE
	}
	n, err := f.feed(ctx, data)
	f.mu.Lock()
	f.size += int64(n)
	f.mu.Unlock()
	if err == errInterrupted {
		return 0, syscall.EINTR
	}
	if err != nil {
		f.cfg.Logger.Printf("restore/%s: write at %d: %v", f.name, off, err)
		return uint32(n), errno(err)
	}
	return uint32(n), 0
}

// feed hands data to the restart, and returns once it has taken all of it,
// or failed, or ctx is done: then the restore is cancelled (a writer
// interrupted mid-stream is as good as gone), which ends the pipe's write
// at once. Nothing holds data after feed returns: go-fuse reuses it.
func (f *restoreFile) feed(ctx context.Context, data []byte) (int, error) {
	type written struct {
		n   int
		err error
	}
	done := make(chan written, 1)
	go func() {
		n, err := f.pipe.Write(data)
		done <- written{n, err}
	}()
	select {
	case w := <-done:
		return w.n, w.err
	case <-ctx.Done():
		f.cancel(errWriteInterrupted)
		w := <-done
		return w.n, errInterrupted
	}
}

var _ = (gofs.FileFlusher)((*restoreWriter)(nil))

// Flush ends the image and waits for the restart, so that its error
// reaches close() and the writer (cp) fails with it. The kernel calls Flush
// for every close of a descriptor of the open file: the first ends the
// image; every one returns the outcome. A writer that dies closes its
// files on its way out: that close is no end of the image but its going
// away, and so is an interrupted close.
func (w *restoreWriter) Flush(ctx context.Context) syscall.Errno {
	f := w.f
	if c, ok := callerOf(ctx); ok {
		if sig := killedBy(c.Pid); sig != 0 {
			f.cancel(restoreCancelled(fmt.Sprintf("the writer was killed (%s)", unix.SignalName(sig))))
			return syscall.ECANCELED
		}
	}
	if !f.take(ctx) {
		f.cancel(errFlushInterrupted)
		return syscall.EINTR
	}
	f.mu.Lock()
	if f.cancelled {
		// Nothing to wait for: the teardown goes on in the background.
		f.mu.Unlock()
		f.give()
		return syscall.ECANCELED
	}
	if !f.closed {
		f.closed = true
		f.pipe.Close() // the end of the image
	}
	f.mu.Unlock()
	f.give()
	select {
	case <-f.ended:
	case <-ctx.Done():
		f.cancel(errFlushInterrupted)
		return syscall.EINTR
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errno
}

var _ = (gofs.FileReleaser)((*restoreWriter)(nil))

// Release cancels a restart that no Flush saw through: nobody would learn
// its outcome, nor could anyone finish its image.
func (w *restoreWriter) Release(ctx context.Context) syscall.Errno {
	w.f.cancel(errReleasedUnfinished)
	return 0
}
