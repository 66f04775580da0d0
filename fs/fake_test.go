package fs

import (
	"context"
	"io"
	"log"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// The fs package's unit tests need neither root nor FUSE: snapshots are
// taken by a fake take that serves fakeLayouts, images held in memory.

// patience bounds every wait of these tests for something that must
// happen: a test that would otherwise hang fails instead. It is never a
// measure of how fast something happened.
const patience = 10 * time.Second

func testConfig(t *testing.T, grace time.Duration) *Config {
	return &Config{Grace: grace, Logger: log.New(testWriter{t}, "", 0)}
}

// testWriter logs through t, so that the daemon's lines show with -v.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("ckptfs: %s", p)
	return len(p), nil
}

// self is the test process as a FUSE caller.
func self() checkpoint.Caller {
	return checkpoint.Caller{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Pid: os.Getpid()}
}

// fakeLayout is an image held in memory, laid out as if over a frozen
// tree.
type fakeLayout struct {
	data []byte
	res  *checkpoint.Result

	// Reads at or past gateFrom report their offset on blocked (if it has
	// room) and wait for gate to be closed.
	gateFrom int64
	gate     chan struct{}
	blocked  chan int64

	// released: the tree ran on once laid out, its pages copied (zero:
	// it is held frozen, as without copies).
	released time.Time

	mu       sync.Mutex
	err      error // what Err says once failed is closed
	complete bool
	thawed   chan struct{} // closed by Thaw (and Close)
	closed   chan struct{} // closed by Close
	failed   chan struct{}
}

func newFakeLayout(data []byte) *fakeLayout {
	n := int64(len(data))
	return &fakeLayout{
		data: data,
		res: &checkpoint.Result{
			Size: n,
			Pids: checkpoint.Section{Off: min(16, n), Len: min(16, n/2)},
			Tree: checkpoint.Section{Off: min(32, n), Len: min(16, n/2)},
		},
		gateFrom: -1,
		thawed:   make(chan struct{}),
		closed:   make(chan struct{}),
		failed:   make(chan struct{}),
	}
}

// gated makes reads at or past off wait until the returned gate is
// closed.
func (l *fakeLayout) gated(off int64) chan struct{} {
	l.gateFrom, l.gate, l.blocked = off, make(chan struct{}), make(chan int64, 16)
	return l.gate
}

func (l *fakeLayout) Result() *checkpoint.Result { return l.res }
func (l *fakeLayout) Released() time.Time        { return l.released }
func (l *fakeLayout) CopiedNow() int64           { return 0 }
func (l *fakeLayout) Size() int64                { return int64(len(l.data)) }

func (l *fakeLayout) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(l.data)) {
		return 0, io.EOF
	}
	if l.gateFrom >= 0 && off >= l.gateFrom {
		select {
		case l.blocked <- off:
		default:
		}
		<-l.gate
	}
	return copy(p, l.data[off:]), nil
}

func (l *fakeLayout) PieceOf(p []byte, off int64) checkpoint.Piece { return checkpoint.Piece{} }
func (l *fakeLayout) Sum(pc checkpoint.Piece)                      {}

func (l *fakeLayout) Complete() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.complete
}

// readThrough makes the layout complete, as a reader that read it through
// in order does.
func (l *fakeLayout) readThrough() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.complete = true
}

func (l *fakeLayout) Thaw() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.thawed:
	default:
		close(l.thawed)
	}
}

func (l *fakeLayout) Close() {
	l.Thaw()
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
}

func (l *fakeLayout) Failed() <-chan struct{} { return l.failed }
func (l *fakeLayout) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// fail fails the layout as a vanished process does: Err says err, the tree
// is let go, and Failed is closed.
func (l *fakeLayout) fail(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
	l.Thaw()
	close(l.failed)
}

// fakeTake is a takeFunc whose every call is handed to the test on calls,
// and returns what the test replies; a call whose ctx is done first
// returns its error, as checkpoint.Lay does, unless deaf.
type fakeTake struct {
	calls chan *takeCall
	deaf  bool
}

type takeCall struct {
	ctx   context.Context
	pid   int
	reply chan takeReply
}

type takeReply struct {
	lay layout
	err error
}

func newFakeTake() *fakeTake {
	return &fakeTake{calls: make(chan *takeCall, 16)}
}

func (ft *fakeTake) take(ctx context.Context, pid int, opt checkpoint.Options) (layout, error) {
	c := &takeCall{ctx: ctx, pid: pid, reply: make(chan takeReply, 1)}
	ft.calls <- c
	if ft.deaf {
		r := <-c.reply
		return r.lay, r.err
	}
	select {
	case r := <-c.reply:
		return r.lay, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// next returns the next call of take.
func (ft *fakeTake) next(t *testing.T) *takeCall {
	t.Helper()
	select {
	case c := <-ft.calls:
		return c
	case <-time.After(patience):
		t.Fatal("take was not called")
		return nil
	}
}

// noCall fails if take was called again.
func (ft *fakeTake) noCall(t *testing.T) {
	t.Helper()
	select {
	case c := <-ft.calls:
		t.Fatalf("take called again (pid %d)", c.pid)
	default:
	}
}

// within runs f and fails the test if f has not returned after patience.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(patience):
		t.Fatalf("%s: still blocked after %v", what, patience)
	}
}

// waitClosed fails unless ch gets closed.
func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(patience):
		t.Fatalf("%s did not happen", what)
	}
}

// isOpen reports whether ch is still open.
func isOpen(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// until waits for cond, which some goroutine is on its way to making true.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waiting is how many requests wait for the capture under way.
func (s *snapshotter) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flight == nil {
		return 0
	}
	return s.flight.waiters
}

// current returns the current snapshot and its open handles.
func (s *snapshotter) current() (*snapshot, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil, 0
	}
	return s.cur, s.cur.refs
}
