package fs

import (
	"context"
	"errors"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
)

type got struct {
	snap *snapshot
	err  error
}

// getAsync runs get in a goroutine and delivers its result on the channel.
func getAsync(ctx context.Context, s *snapshotter, hold, image bool) <-chan got {
	ch := make(chan got, 1)
	go func() {
		snap, err := s.get(ctx, self(), hold, image)
		ch <- got{snap, err}
	}()
	return ch
}

func result(t *testing.T, what string, ch <-chan got) got {
	t.Helper()
	select {
	case g := <-ch:
		return g
	case <-time.After(patience):
		t.Fatalf("%s: get still blocked after %v", what, patience)
		return got{}
	}
}

// N requests for one directory while its snapshot is being taken share
// that one capture.
func TestSnapshotSingleFlight(t *testing.T) {
	ft := newFakeTake()
	s := newSnapshotter(100, testConfig(t, time.Hour), ft.take)
	const n = 8
	var results []<-chan got
	for i := 0; i < n; i++ {
		results = append(results, getAsync(context.Background(), s, true, true))
	}
	call := ft.next(t)
	until(t, "every request waits for the capture", func() bool { return s.waiting() == n })
	lay := newFakeLayout(make([]byte, 100))
	call.reply <- takeReply{lay: lay}
	var first *snapshot
	for i, ch := range results {
		g := result(t, "a waiter", ch)
		if g.err != nil {
			t.Fatalf("waiter %d: %v", i, g.err)
		}
		if first == nil {
			first = g.snap
		}
		if g.snap != first || g.snap.lay != lay {
			t.Fatalf("waiter %d got another snapshot", i)
		}
	}
	ft.noCall(t)
	if _, refs := s.current(); refs != n {
		t.Errorf("the snapshot has %d handles, want %d", refs, n)
	}
	// Later users within the grace period share it too.
	if g := result(t, "a stat", getAsync(context.Background(), s, false, false)); g.err != nil || g.snap != first {
		t.Errorf("a later stat: %v, same snapshot %v", g.err, g.snap == first)
	}
	ft.noCall(t)
}

// A waiter whose request is interrupted returns at once, while the capture
// goes on for the others.
func TestSnapshotWaiterAbandons(t *testing.T) {
	ft := newFakeTake()
	s := newSnapshotter(100, testConfig(t, time.Hour), ft.take)
	ctx, cancel := context.WithCancel(context.Background())
	quitter := getAsync(ctx, s, true, false)
	stayer := getAsync(context.Background(), s, true, false)
	call := ft.next(t)
	until(t, "both requests wait", func() bool { return s.waiting() == 2 })
	cancel()
	g := result(t, "the interrupted waiter", quitter)
	if !errors.Is(g.err, syscall.EINTR) {
		t.Fatalf("the interrupted waiter: %v, want EINTR", g.err)
	}
	if !isOpen(call.ctx.Done()) {
		t.Fatal("the capture was cancelled though a waiter remains")
	}
	if s.waiting() != 1 {
		t.Errorf("%d waiters, want 1", s.waiting())
	}
	lay := newFakeLayout(make([]byte, 100))
	call.reply <- takeReply{lay: lay}
	if g := result(t, "the remaining waiter", stayer); g.err != nil || g.snap.lay != lay {
		t.Fatalf("the remaining waiter: %v", g.err)
	}
	if _, refs := s.current(); refs != 1 {
		t.Errorf("the snapshot has %d handles, want 1 (the interrupted request holds none)", refs)
	}
}

// When every waiter left, the capture is cancelled; the next use starts a
// new one.
func TestSnapshotAllAbandonCancels(t *testing.T) {
	ft := newFakeTake()
	s := newSnapshotter(100, testConfig(t, time.Hour), ft.take)
	var cancels []context.CancelFunc
	var results []<-chan got
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		results = append(results, getAsync(ctx, s, false, false))
	}
	call := ft.next(t)
	until(t, "every request waits", func() bool { return s.waiting() == 3 })
	for i, cancel := range cancels {
		cancel()
		if g := result(t, "an interrupted waiter", results[i]); !errors.Is(g.err, syscall.EINTR) {
			t.Fatalf("waiter %d: %v, want EINTR", i, g.err)
		}
	}
	waitClosed(t, "the capture's cancellation", call.ctx.Done())
	// A new request waits for the cancelled capture to end, then takes
	// its own.
	again := getAsync(context.Background(), s, false, false)
	call2 := ft.next(t)
	if call2.ctx.Err() != nil {
		t.Fatal("the new capture started cancelled")
	}
	call2.reply <- takeReply{lay: newFakeLayout(make([]byte, 10))}
	if g := result(t, "the new request", again); g.err != nil {
		t.Fatal(g.err)
	}
}

// A capture that finishes after every waiter left is let go at once: its
// tree runs on.
func TestSnapshotLateCaptureClosed(t *testing.T) {
	ft := newFakeTake()
	ft.deaf = true // finishes whatever its ctx says
	s := newSnapshotter(100, testConfig(t, time.Hour), ft.take)
	ctx, cancel := context.WithCancel(context.Background())
	w := getAsync(ctx, s, true, true)
	call := ft.next(t)
	until(t, "the request waits", func() bool { return s.waiting() == 1 })
	cancel()
	if g := result(t, "the interrupted waiter", w); !errors.Is(g.err, syscall.EINTR) {
		t.Fatalf("%v, want EINTR", g.err)
	}
	lay := newFakeLayout(make([]byte, 10))
	call.reply <- takeReply{lay: lay}
	waitClosed(t, "closing the abandoned layout", lay.closed)
	if snap, _ := s.current(); snap != nil {
		t.Error("the abandoned layout became the current snapshot")
	}
}

// A capture stuck in one directory (a task that will not stop) delays no
// request for another, nor the root's sweeps.
func TestSnapshotStuckDirectoryIsolated(t *testing.T) {
	ft := newFakeTake()
	r := newRoot(testConfig(t, time.Hour))
	r.take = ft.take
	a, b := procKey{100, 1}, procKey{200, 1}
	sa := r.snapshotter(a)
	stuck := getAsync(context.Background(), sa, true, true)
	callA := ft.next(t)
	until(t, "the request for A waits", func() bool { return sa.waiting() == 1 })

	var sb *snapshotter
	within(t, "root.snapshotter(B)", func() { sb = r.snapshotter(b) })
	forB := getAsync(context.Background(), sb, true, true)
	callB := ft.next(t)
	if callB.pid != 200 {
		t.Fatalf("take called for %d, want 200", callB.pid)
	}
	callB.reply <- takeReply{lay: newFakeLayout(make([]byte, 10))}
	if g := result(t, "get on B while A is stuck", forB); g.err != nil {
		t.Fatal(g.err)
	}
	within(t, "root.retireUnused(B)", func() { r.retireUnused(b) })
	within(t, "a stat of B", func() { sb.get(context.Background(), self(), false, false) })
	within(t, "root.snapshotter(B) again", func() { r.snapshotter(b) })
	if r.snapshotter(a) != sa {
		t.Error("the keeper of A, busy, was dropped")
	}

	callA.reply <- takeReply{err: errors.New("checkpoint: task did not stop")}
	if g := result(t, "the stuck request", stuck); g.err == nil {
		t.Error("the stuck capture's error was lost")
	}
}

// callerDying makes every caller of a test read as dying, or not.
func callerDying(t *testing.T, is bool) {
	was := dying
	dying = func(int) bool { return is }
	t.Cleanup(func() { dying = was })
}

// A section file's stat waiting for a stuck capture returns EINTR when
// its request is interrupted and its caller is dying, and one of another
// directory is served meanwhile. (Real processes, for /proc; a fake take.)
func TestSectionGetattrInterrupted(t *testing.T) {
	callerDying(t, true)
	ft := newFakeTake()
	r := newRoot(testConfig(t, time.Hour))
	r.take = ft.take
	dirA, dirB := procDirOf(t, r), procDirOf(t, r)
	fileA := &sectionFile{dir: dirA, kind: kindImage}
	fileB := &sectionFile{dir: dirB, kind: kindTree}

	cancelA := make(chan struct{})
	errA := make(chan syscall.Errno, 1)
	go func() {
		var out fuse.AttrOut
		errA <- fileA.Getattr(fuseContext(cancelA), nil, &out)
	}()
	callA := ft.next(t)
	defer func() { callA.reply <- takeReply{err: errors.New("test over")} }()

	errB := make(chan syscall.Errno, 1)
	var outB fuse.AttrOut
	go func() { errB <- fileB.Getattr(fuseContext(nil), nil, &outB) }()
	callB := ft.next(t)
	lay := newFakeLayout(make([]byte, 100))
	callB.reply <- takeReply{lay: lay}
	select {
	case e := <-errB:
		if e != 0 || outB.Size != uint64(lay.res.Tree.Len) {
			t.Fatalf("stat of B: %v, size %d", e, outB.Size)
		}
	case <-time.After(patience):
		t.Fatal("the stat of B waited for A's capture")
	}

	close(cancelA) // FUSE_INTERRUPT
	select {
	case e := <-errA:
		if e != syscall.EINTR {
			t.Fatalf("interrupted stat of A: %v, want EINTR", e)
		}
	case <-time.After(patience):
		t.Fatal("the interrupted stat of A did not return")
	}
	waitClosed(t, "cancelling A's capture, which nobody waits for", callA.ctx.Done())
}

// A caller that was interrupted by a signal it caught (not dying) is
// served as if nothing happened: its stat waits for the capture, which is
// not cancelled, and gets its answer.
func TestSectionGetattrSignalCaught(t *testing.T) {
	callerDying(t, false)
	ft := newFakeTake()
	r := newRoot(testConfig(t, time.Hour))
	r.take = ft.take
	file := &sectionFile{dir: procDirOf(t, r), kind: kindTree}
	interrupt := make(chan struct{})
	errc := make(chan syscall.Errno, 1)
	var out fuse.AttrOut
	go func() { errc <- file.Getattr(fuseContext(interrupt), nil, &out) }()
	call := ft.next(t)
	close(interrupt) // FUSE_INTERRUPT: a signal the caller catches
	select {
	case e := <-errc:
		t.Fatalf("a caller that only caught a signal got %v before its answer", e)
	case <-time.After(3 * pollDying):
	}
	if !isOpen(call.ctx.Done()) {
		t.Fatal("the capture was cancelled for a caller that only caught a signal")
	}
	lay := newFakeLayout(make([]byte, 100))
	call.reply <- takeReply{lay: lay}
	within(t, "the stat after its capture", func() {
		if e := <-errc; e != 0 || out.Size != uint64(lay.res.Tree.Len) {
			t.Errorf("stat: %v, size %d", e, out.Size)
		}
	})
}

// procDirOf starts a process and returns its directory.
func procDirOf(t *testing.T, r *root) *procDir {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep to start: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	key, _, ok := lookupProcess(cmd.Process.Pid)
	if !ok {
		t.Fatalf("process %d not found", cmd.Process.Pid)
	}
	return &procDir{root: r, key: key}
}

// fuseContext is a request's context as go-fuse makes it: the test process
// as the caller, and cancel closed on FUSE_INTERRUPT.
func fuseContext(cancel <-chan struct{}) context.Context {
	c := self()
	return &fuse.Context{Caller: fuse.Caller{Owner: fuse.Owner{Uid: c.Uid, Gid: c.Gid}, Pid: uint32(c.Pid)}, Cancel: cancel}
}

// A snapshot used by a stat only is let go (its tree thawed) once its
// grace period is over; one held open, once it is closed and the grace
// period is over; an image read through, as soon as it is closed.
func TestSnapshotGraceExpiry(t *testing.T) {
	ft := newFakeTake()
	s := newSnapshotter(100, testConfig(t, 20*time.Millisecond), ft.take)

	stat := getAsync(context.Background(), s, false, false)
	lay := newFakeLayout(make([]byte, 10))
	ft.next(t).reply <- takeReply{lay: lay}
	if g := result(t, "stat", stat); g.err != nil {
		t.Fatal(g.err)
	}
	waitClosed(t, "the grace expiry after a stat", lay.closed)
	until(t, "the keeper drops the expired snapshot", func() bool { snap, _ := s.current(); return snap == nil })

	held := getAsync(context.Background(), s, true, true)
	lay2 := newFakeLayout(make([]byte, 10))
	ft.next(t).reply <- takeReply{lay: lay2}
	g := result(t, "open", held)
	if g.err != nil {
		t.Fatal(g.err)
	}
	if !isOpen(lay2.thawed) {
		t.Fatal("an open snapshot's tree was thawed")
	}
	s.put(g.snap, true)
	waitClosed(t, "the grace expiry after close", lay2.closed)

	held = getAsync(context.Background(), s, true, true)
	lay3 := newFakeLayout(make([]byte, 10))
	ft.next(t).reply <- takeReply{lay: lay3}
	g = result(t, "open", held)
	lay3.complete = true // read through
	s.put(g.snap, true)
	if isOpen(lay3.thawed) {
		t.Error("an image read through and closed kept its tree frozen")
	}
}

// Concurrent stats, opens and closes of several directories, each capture
// finishing at its own pace: nothing deadlocks, and each directory's
// captures are one at a time.
func TestSnapshotConcurrentDirectories(t *testing.T) {
	r := newRoot(testConfig(t, 5*time.Millisecond))
	var mu sync.Mutex
	running := map[int]bool{}
	r.take = func(ctx context.Context, pid int, _ checkpoint.Options) (layout, error) {
		mu.Lock()
		if running[pid] {
			mu.Unlock()
			t.Errorf("two captures of %d at once", pid)
			return nil, errors.New("overlap")
		}
		running[pid] = true
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(running, pid)
			mu.Unlock()
		}()
		select {
		case <-time.After(time.Duration(pid%3) * time.Millisecond):
			return newFakeLayout(make([]byte, 64)), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := procKey{pid: 100 + i%4, start: 1}
			for j := 0; j < 20; j++ {
				ctx, cancel := context.WithCancel(context.Background())
				if j%5 == 4 {
					cancel() // an interrupted request now and then
				}
				s := r.snapshotter(key)
				hold := j%2 == 0
				snap, err := s.get(ctx, self(), hold, hold)
				cancel()
				switch {
				case errors.Is(err, errKeeperGone), errors.Is(err, syscall.EINTR):
				case err != nil:
					t.Error(err)
				case hold:
					s.put(snap, true)
				}
			}
		}()
	}
	within(t, "the concurrent requests", wg.Wait)
}
