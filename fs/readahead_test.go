package fs

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func testImage(n int) []byte {
	data := make([]byte, n)
	rand.New(rand.NewSource(1)).Read(data)
	return data
}

// replyBytes copies what a read result would send and lets it go, as
// go-fuse does.
func replyBytes(t *testing.T, res fuse.ReadResult) []byte {
	t.Helper()
	b, st := res.Bytes(make([]byte, res.Size()))
	if !st.Ok() {
		t.Fatalf("Bytes: %v", st)
	}
	out := bytes.Clone(b)
	res.Done()
	return out
}

func readAt(t *testing.T, ra *readAhead, ctx context.Context, size int, off int64) ([]byte, error) {
	t.Helper()
	res, err := ra.read(ctx, make([]byte, size), off)
	if err != nil {
		return nil, err
	}
	return replyBytes(t, res), nil
}

// A sequential reader gets the image's bytes, read ahead, to the end.
func TestReadAheadSequential(t *testing.T) {
	for _, size := range []int{4096, 128 << 10, maxRead} {
		data := testImage(5*maxRead + 1234)
		ra := newReadAhead(newFakeLayout(data))
		var got []byte
		for off := int64(0); ; {
			b, err := readAt(t, ra, context.Background(), size, off)
			if err != nil {
				t.Fatalf("read %d at %d: %v", size, off, err)
			}
			if len(b) == 0 {
				break
			}
			if ra.run == nil && off+int64(len(b)) < int64(len(data)) && off > 0 {
				t.Errorf("read %d at %d: not reading ahead", size, off)
			}
			got = append(got, b...)
			off += int64(len(b))
		}
		if !bytes.Equal(got, data) {
			t.Errorf("requests of %d: the image read back differs (%d bytes of %d)", size, len(got), len(data))
		}
		within(t, "close", ra.close)
	}
}

// Random reads, mixed with runs of sequential ones, get the right bytes.
func TestReadAheadRandom(t *testing.T) {
	data := testImage(3*maxRead + 77)
	ra := newReadAhead(newFakeLayout(data))
	defer ra.close()
	rnd := rand.New(rand.NewSource(2))
	off := int64(0)
	for i := 0; i < 300; i++ {
		size := 1 + rnd.Intn(maxRead)
		if rnd.Intn(3) == 0 {
			off = rnd.Int63n(int64(len(data)) + 10)
			size = 4096
		}
		b, err := readAt(t, ra, context.Background(), size, off)
		if err != nil {
			t.Fatalf("read %d at %d: %v", size, off, err)
		}
		want := data[min(off, int64(len(data))):min(off+int64(size), int64(len(data)))]
		if !bytes.Equal(b, want) {
			t.Fatalf("read %d at %d: %d bytes, wrong", size, off, len(b))
		}
		off += int64(len(b))
		if len(b) == 0 {
			off = 0
		}
	}
}

// A request waiting for a chunk still being read gives up when it is
// interrupted; its retry gets the chunk, and close ends the goroutine.
func TestReadAheadWaitInterrupted(t *testing.T) {
	data := testImage(4 * maxRead)
	lay := newFakeLayout(data)
	gate := lay.gated(maxRead)
	ra := newReadAhead(lay)
	if b, err := readAt(t, ra, context.Background(), maxRead, 0); err != nil || !bytes.Equal(b, data[:maxRead]) {
		t.Fatalf("first read: %v", err)
	}
	if ra.run == nil {
		t.Fatal("not reading ahead after a first full read at 0")
	}
	<-lay.blocked // the read-ahead waits at the gate

	ctx, cancel := context.WithCancel(context.Background())
	watched := watchedCtx{ctx, make(chan struct{}, 2)}
	errc := make(chan error, 1)
	go func() {
		_, err := ra.read(watched, make([]byte, maxRead), maxRead)
		errc <- err
	}()
	<-watched.asked // waiting for its turn (it is free)
	<-watched.asked // waiting for the chunk
	cancel()
	var err error
	within(t, "the interrupted read", func() { err = <-errc })
	if !errors.Is(err, syscall.EINTR) {
		t.Fatalf("interrupted read: %v, want EINTR", err)
	}
	close(gate)
	b, err := readAt(t, ra, context.Background(), maxRead, maxRead)
	if err != nil || !bytes.Equal(b, data[maxRead:2*maxRead]) {
		t.Fatalf("the retried read: %v", err)
	}
	within(t, "close", ra.close)
	if ra.run != nil {
		t.Error("still reading ahead after close")
	}
}

// A request waiting for a read of its own (a random access, here stuck)
// gives up when interrupted; close waits for that read to end.
func TestReadAheadOwnReadInterrupted(t *testing.T) {
	data := testImage(2 * maxRead)
	lay := newFakeLayout(data)
	gate := lay.gated(maxRead)
	ra := newReadAhead(lay)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := ra.read(ctx, make([]byte, 4096), maxRead+100)
		errc <- err
	}()
	<-lay.blocked
	cancel()
	var err error
	within(t, "the interrupted read", func() { err = <-errc })
	if !errors.Is(err, syscall.EINTR) {
		t.Fatalf("interrupted read: %v, want EINTR", err)
	}
	// The handle serves other requests meanwhile.
	if b, err := readAt(t, ra, context.Background(), 100, 5); err != nil || !bytes.Equal(b, data[5:105]) {
		t.Fatalf("a read after the interrupted one: %v", err)
	}
	closing := make(chan struct{})
	go func() {
		ra.close()
		close(closing)
	}()
	select {
	case <-closing:
		t.Fatal("close returned while a read of the handle still ran")
	default:
	}
	close(gate)
	waitClosed(t, "close", closing)
}

// A request waiting for its turn behind another gives up when interrupted.
func TestReadAheadTurnInterrupted(t *testing.T) {
	data := testImage(2 * maxRead)
	lay := newFakeLayout(data)
	gate := lay.gated(maxRead)
	ra := newReadAhead(lay)
	first := make(chan error, 1)
	go func() {
		_, err := ra.read(context.Background(), make([]byte, 4096), maxRead)
		first <- err
	}()
	<-lay.blocked
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ra.read(ctx, make([]byte, 10), 0); !errors.Is(err, syscall.EINTR) {
		t.Fatalf("read waiting for its turn: %v, want EINTR", err)
	}
	close(gate)
	within(t, "the first read", func() {
		if err := <-first; err != nil {
			t.Error(err)
		}
	})
	ra.close()
}

// watchedCtx tells on asked each time a waiter takes its Done channel: a
// select is about to wait on it.
type watchedCtx struct {
	context.Context
	asked chan struct{}
}

func (c watchedCtx) Done() <-chan struct{} {
	select {
	case c.asked <- struct{}{}:
	default:
	}
	return c.Context.Done()
}
