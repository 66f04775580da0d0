package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// restoreWriter is the handle that created restore/<name>: the image's
// writer. Its writes feed the restart, its close (Flush) ends the image
// and waits for the restart's outcome, which that close() returns.
//
// A writer gone before the restart finished cancels it, and the restart
// then undoes what it made: a writer that dies in a write or in close (a
// dying caller cannot finish dying until its request is answered, see
// untilCallerDies), or a file released before its image was ended.
// Cancelling answers at once; the teardown goes on in the background, and
// the outcome says "failed" with the cause, and "cancelled". A writer that
// only caught a signal is served as if nothing happened.
type restoreWriter struct {
	f *restoreFile
}

// restoreCancelled is why a writer's going away cancelled a restore.
type restoreCancelled string

func (c restoreCancelled) Error() string { return "restore cancelled: " + string(c) }

func (c restoreCancelled) Unwrap() error { return syscall.ECANCELED }

const (
	errWriterDied         = restoreCancelled("the writer died before the restart finished")
	errReleasedUnfinished = restoreCancelled("the writer released the file before the image was complete")
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
	ctx, served := untilCallerDies(ctx)
	defer served()
	f := w.f
	if !f.take(ctx) {
		f.cancel(errWriterDied)
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
// or failed, or ctx is done (the writer is dying): then the restore is
// cancelled, which ends the pipe's write at once. Nothing holds data after
// feed returns: go-fuse reuses it.
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
		f.cancel(errWriterDied)
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
	if c, ok := callerOf(ctx); ok && dying(c.Pid) {
		f.cancel(errWriterDied) // its close on the way out
		return syscall.ECANCELED
	}
	ctx, served := untilCallerDies(ctx)
	defer served()
	if !f.take(ctx) {
		f.cancel(errWriterDied)
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
		// Dying while the restart finishes (Ctrl-C on cp): that is the
		// writer's way of saying stop.
		f.cancel(errWriterDied)
		return syscall.EINTR
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errno
}

var _ = (gofs.FileReleaser)((*restoreWriter)(nil))

// Release cancels a restart whose image no Flush ended: nobody could
// finish it. One whose image is complete finishes on its own.
func (w *restoreWriter) Release(ctx context.Context) syscall.Errno {
	w.f.mu.Lock()
	ended := w.f.closed
	w.f.mu.Unlock()
	if !ended {
		w.f.cancel(errReleasedUnfinished)
	}
	return 0
}
