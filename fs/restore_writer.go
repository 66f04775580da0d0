package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// restoreWriter is the handle that started a restore under a name of
// restore/ (its create, or an open for writing over an ended one): the
// image's writer. Its writes feed the restart, its close (Flush) ends the image
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
	r *restoreRun
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
func (r *restoreRun) cancel(cause error) {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	if r.first == nil {
		r.first, r.cancelled = cause, true
		r.cfg.Logger.Printf("%s: %v", r.name, cause)
	}
	r.mu.Unlock()
	r.stop()
	r.pipe.CloseWithError(cause)
}

// take waits for the file's turn (a write, or the end of the image) until
// ctx is done.
func (r *restoreRun) take(ctx context.Context) bool {
	select {
	case r.turn <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *restoreRun) give() { <-r.turn }

var _ = (gofs.FileWriter)((*restoreWriter)(nil))

func (w *restoreWriter) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	ctx, served := untilCallerDies(ctx)
	defer served()
	r := w.r
	if !r.take(ctx) {
		r.cancel(errWriterDied)
		return 0, syscall.EINTR
	}
	defer r.give()
	r.mu.Lock()
	closed, size := r.closed, r.size
	r.mu.Unlock()
	if closed {
		return 0, syscall.EBADF
	}
	if off != size {
		// The restart consumes the image as a stream.
		r.cfg.Logger.Printf("%s: write at %d, expected %d: images must be written in order", r.name, off, size)
		return 0, syscall.ESPIPE
	}
	n, err := r.feed(ctx, data)
	r.mu.Lock()
	r.size += int64(n)
	if n > 0 && !r.done {
		r.mtime = time.Now()
	}
	r.mu.Unlock()
	if err == errInterrupted {
		return 0, syscall.EINTR
	}
	if err != nil {
		r.cfg.Logger.Printf("%s: write at %d: %v", r.name, off, err)
		return uint32(n), errno(err)
	}
	return uint32(n), 0
}

// feed hands data to the restart, and returns once it has taken all of it,
// or failed, or ctx is done (the writer is dying): then the restore is
// cancelled, which ends the pipe's write at once. Nothing holds data after
// feed returns: go-fuse reuses it.
func (r *restoreRun) feed(ctx context.Context, data []byte) (int, error) {
	type written struct {
		n   int
		err error
	}
	done := make(chan written, 1)
	go func() {
		n, err := r.pipe.Write(data)
		done <- written{n, err}
	}()
	select {
	case w := <-done:
		return w.n, w.err
	case <-ctx.Done():
		r.cancel(errWriterDied)
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
	r := w.r
	if c, ok := callerOf(ctx); ok && dying(c.Pid) {
		r.cancel(errWriterDied) // its close on the way out
		return syscall.ECANCELED
	}
	ctx, served := untilCallerDies(ctx)
	defer served()
	if !r.take(ctx) {
		r.cancel(errWriterDied)
		return syscall.EINTR
	}
	r.mu.Lock()
	if r.cancelled {
		// Nothing to wait for: the teardown goes on in the background.
		r.mu.Unlock()
		r.give()
		return syscall.ECANCELED
	}
	if !r.closed {
		r.closed = true
		r.pipe.Close() // the end of the image
	}
	r.mu.Unlock()
	r.give()
	select {
	case <-r.ended:
	case <-ctx.Done():
		// Dying while the restart finishes (Ctrl-C on cp): that is the
		// writer's way of saying stop.
		r.cancel(errWriterDied)
		return syscall.EINTR
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errno
}

var _ = (gofs.FileReleaser)((*restoreWriter)(nil))

// Release cancels a restart whose image no Flush ended: nobody could
// finish it. One whose image is complete finishes on its own.
func (w *restoreWriter) Release(ctx context.Context) syscall.Errno {
	w.r.mu.Lock()
	ended := w.r.closed
	w.r.mu.Unlock()
	if !ended {
		w.r.cancel(errReleasedUnfinished)
	}
	return 0
}
