package fs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/restart"
)

// fakeRestart stands for restart.Restore: it reads the image up to want
// bytes, then finishes with what finish returns (nil: success), or, if
// finish is nil, waits for its ctx to be cancelled. Its ctx is reported
// on started.
type fakeRestart struct {
	want    int
	finish  func(image []byte) error
	started chan context.Context
	read    chan []byte
}

func newFakeRestart(want int, finish func([]byte) error) *fakeRestart {
	return &fakeRestart{want: want, finish: finish, started: make(chan context.Context, 1), read: make(chan []byte, 1)}
}

func (fr *fakeRestart) run(ctx context.Context, r io.Reader, opt restart.Options) (*restart.Result, error) {
	fr.started <- ctx
	image := make([]byte, fr.want)
	n, err := io.ReadFull(r, image)
	fr.read <- image[:n]
	if err != nil {
		return nil, fmt.Errorf("restart: read the image: %w", err)
	}
	if fr.finish == nil {
		<-ctx.Done()
		return nil, fmt.Errorf("restart: build forest: step 3 (fork 12): %w", ctx.Err())
	}
	if err := fr.finish(image); err != nil {
		return nil, err
	}
	return &restart.Result{Root: 7, Seed: 6, Tasks: []restart.TaskPid{{Image: []int32{1}, Now: []int32{1}, Host: 7}}}, nil
}

func newTestRestore(t *testing.T, fr *fakeRestart) (*restoreRun, *restoreWriter) {
	r := newRestoreRun(testConfig(t, 0), "img", 0, 0, restart.Options{}, fr.run)
	return r, &restoreWriter{r}
}

// status reads a restore's status as a reader of restore/<name> gets it,
// and checks that its stat agrees.
func status(t *testing.T, r *restoreRun) Outcome {
	t.Helper()
	data := r.status()
	var attr fuse.Attr
	r.fillAttr(&attr)
	if done, _ := r.over(); done && attr.Size != uint64(len(data)) {
		t.Errorf("status of %d bytes, stat says %d", len(data), attr.Size)
	}
	var out Outcome
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("status %q: %v", data, err)
	}
	return out
}

// waitEnded waits for the restart of r to return.
func waitEnded(t *testing.T, r *restoreRun) {
	t.Helper()
	waitClosed(t, "the end of the restart", r.ended)
}

func TestRestoreFileNoNodeFlush(t *testing.T) {
	// go-fuse prefers the node's Flush to the handle's: the node must have
	// none, or a reader's close would get the restart's errno.
	if _, ok := any(&restoreFile{}).(gofs.NodeFlusher); ok {
		t.Fatal("restoreFile implements NodeFlusher")
	}
	if _, ok := any(&restoreFile{}).(gofs.NodeWriter); ok {
		t.Fatal("restoreFile implements NodeWriter: writes would bypass the writer's handle")
	}
	if _, ok := any(&restoreFile{}).(gofs.NodeReader); ok {
		t.Fatal("restoreFile implements NodeReader: reads would bypass the status an open rendered")
	}
}

func TestRestoreSucceeds(t *testing.T) {
	img := []byte("an image of twenty-nine bytes")
	fr := newFakeRestart(len(img), func([]byte) error { return nil })
	f, w := newTestRestore(t, fr)
	if n, e := w.Write(context.Background(), img[:10], 0); e != 0 || n != 10 {
		t.Fatalf("write: %d, %v", n, e)
	}
	if _, e := w.Write(context.Background(), img[10:], 5); e != syscall.ESPIPE {
		t.Fatalf("write out of order: %v, want ESPIPE", e)
	}
	if n, e := w.Write(context.Background(), img[10:], 10); e != 0 || n != uint32(len(img)-10) {
		t.Fatalf("write: %d, %v", n, e)
	}
	if e := w.Flush(context.Background()); e != 0 {
		t.Fatalf("close: %v", e)
	}
	if got := <-fr.read; !bytes.Equal(got, img) {
		t.Errorf("the restart read %q", got)
	}
	if e := w.Flush(context.Background()); e != 0 {
		t.Errorf("a second close: %v", e)
	}
	w.Release(context.Background())
	out := status(t, f)
	if out.State != "running" || out.Root != 7 || out.Cancelled || len(out.Tasks) != 1 {
		t.Errorf("outcome %+v", out)
	}
}

// A failed restart's first error, naming its step, is the status, and the
// writer's close returns its errno; reading the status works.
func TestRestoreFailureStatus(t *testing.T) {
	fail := errors.New("restart: build forest: step 3 (fork 12 in 7): pid 12 is taken")
	fr := newFakeRestart(4, func([]byte) error { return fail })
	f, w := newTestRestore(t, fr)
	w.Write(context.Background(), []byte("abcd"), 0)
	if e := w.Flush(context.Background()); e != syscall.EINVAL {
		t.Errorf("close: %v, want EINVAL", e)
	}
	out := status(t, f)
	if out.State != "failed" || out.Error != fail.Error() || out.Cancelled {
		t.Errorf("outcome %+v, want failed with %q", out, fail)
	}
	if e := w.Flush(context.Background()); e != syscall.EINVAL {
		t.Errorf("a second close: %v, want EINVAL", e)
	}
}

// A write the restart does not take (it is busy) gives up when its
// request is interrupted: the restore is cancelled and undone, and the
// status says why.
func TestRestoreWriteInterrupted(t *testing.T) {
	fr := newFakeRestart(1<<20, nil)
	f, w := newTestRestore(t, fr)
	rctx := <-fr.started
	// Fill what the restart reads, then block: the restart never takes
	// this write whole.
	if _, e := w.Write(context.Background(), make([]byte, 1<<20), 0); e != 0 {
		t.Fatal(e)
	}
	<-fr.read
	ctx, cancel := context.WithCancel(context.Background())
	watched := watchedCtx{ctx, make(chan struct{}, 2)}
	errc := make(chan syscall.Errno, 1)
	go func() {
		_, e := w.Write(watched, []byte("more"), 1<<20)
		errc <- e
	}()
	<-watched.asked // its turn
	<-watched.asked // the pipe
	cancel()
	var e syscall.Errno
	within(t, "the interrupted write", func() { e = <-errc })
	if e != syscall.EINTR {
		t.Fatalf("interrupted write: %v, want EINTR", e)
	}
	waitClosed(t, "the restart's cancellation", rctx.Done())
	waitEnded(t, f)
	out := status(t, f)
	if out.State != "failed" || out.Error != string(errWriterDied.Error()) || !out.Cancelled {
		t.Errorf("outcome %+v, want failed, cancelled, with %q", out, errWriterDied)
	}
	// The writer's close, if it comes, does not wait and reports the
	// cancellation.
	if e := w.Flush(context.Background()); e != syscall.ECANCELED {
		t.Errorf("close after the cancellation: %v, want ECANCELED", e)
	}
}

// A close waiting for the restart returns EINTR at once when interrupted;
// the restart is cancelled, and the status says so.
func TestRestoreFlushInterrupted(t *testing.T) {
	fr := newFakeRestart(3, nil)
	f, w := newTestRestore(t, fr)
	rctx := <-fr.started
	w.Write(context.Background(), []byte("abc"), 0)
	ctx, cancel := context.WithCancel(context.Background())
	watched := watchedCtx{ctx, make(chan struct{}, 2)}
	errc := make(chan syscall.Errno, 1)
	go func() { errc <- w.Flush(watched) }()
	<-watched.asked // its turn
	<-watched.asked // the restart
	if !isOpen(rctx.Done()) {
		t.Fatal("the restart was cancelled by a close")
	}
	cancel()
	var e syscall.Errno
	within(t, "the interrupted close", func() { e = <-errc })
	if e != syscall.EINTR {
		t.Fatalf("interrupted close: %v, want EINTR", e)
	}
	waitClosed(t, "the restart's cancellation", rctx.Done())
	waitEnded(t, f)
	out := status(t, f)
	if out.State != "failed" || !out.Cancelled || out.Error != errWriterDied.Error() {
		t.Errorf("outcome %+v, want failed, cancelled by the interrupted writer", out)
	}
	w.Release(context.Background())
}

// A file released without a close that saw the restart through cancels it.
func TestRestoreReleaseCancels(t *testing.T) {
	fr := newFakeRestart(10, nil)
	f, w := newTestRestore(t, fr)
	rctx := <-fr.started
	w.Write(context.Background(), []byte("abc"), 0)
	w.Release(context.Background())
	waitClosed(t, "the restart's cancellation", rctx.Done())
	waitEnded(t, f)
	if out := status(t, f); out.State != "failed" || !out.Cancelled || out.Error != errReleasedUnfinished.Error() {
		t.Errorf("outcome %+v", out)
	}
}

// The writer's close of a truncated image is its end: the restart fails
// with its own error (the writer did not go away).
func TestRestoreTruncated(t *testing.T) {
	fr := newFakeRestart(10, func([]byte) error { return nil })
	f, w := newTestRestore(t, fr)
	w.Write(context.Background(), []byte("abc"), 0)
	if e := w.Flush(context.Background()); e == 0 {
		t.Fatal("close of a truncated image succeeded")
	}
	out := status(t, f)
	if out.State != "failed" || out.Cancelled || !strings.Contains(out.Error, "unexpected EOF") {
		t.Errorf("outcome %+v", out)
	}
}
