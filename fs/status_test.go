package fs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/image"
)

// dirStatus is what the status of s's directory says to a reader who may
// see everything.
func dirStatus(t *testing.T, s *snapshotter) DirStatus {
	t.Helper()
	return parseStatus(t, renderStatus(s.pid, s.rec.view(), time.Now(), true))
}

func parseStatus(t *testing.T, data []byte) DirStatus {
	t.Helper()
	var st DirStatus
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("status %q: %v", data, err)
	}
	return st
}

// figuredLayout is a fake layout whose Result carries figures, as
// checkpoint.Lay's does.
func figuredLayout(size int) *fakeLayout {
	lay := newFakeLayout(make([]byte, size))
	lay.res.Mode = image.ModeSubtree
	lay.res.Tasks, lay.res.Processes, lay.res.Threads = 5, 3, 2
	lay.res.Pages, lay.res.PageBytes = 4, 4*4096
	lay.res.Capture, lay.res.Frozen = 30*time.Millisecond, 20*time.Millisecond
	return lay
}

// checkFigures checks a status's snapshot against the layout it was taken
// from.
func checkFigures(t *testing.T, what string, got *SnapshotFigures, lay *fakeLayout, taken time.Time) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no snapshot figures", what)
	}
	res := lay.res
	want := SnapshotFigures{
		Time: taken, Mode: "subtree", Tasks: res.Tasks, Processes: res.Processes, Threads: res.Threads,
		Bytes: int64(len(lay.data)), Pages: res.Pages, PageBytes: res.PageBytes, CaptureMS: 30,
	}
	g := *got
	g.FrozenMS, g.Released, g.BytesRead, g.ReadMS, g.ReadThrough = 0, time.Time{}, 0, 0, false
	if !g.Time.Equal(want.Time) {
		t.Errorf("%s: snapshot time %v, want %v", what, g.Time, want.Time)
	}
	g.Time = want.Time
	if g != want {
		t.Errorf("%s: figures %+v, want %+v", what, g, want)
	}
	if got.FrozenMS < 20 {
		t.Errorf("%s: frozen %v ms, but the capture alone kept it frozen 20 ms", what, got.FrozenMS)
	}
}

// A snapshot's life as its status tells it: none, freezing while the
// capture runs, frozen with the layout's figures, released while a file
// is still open after the image was read through, none when it is gone,
// with the figures of the last snapshot. Reading the status takes nothing.
func TestStatusLife(t *testing.T) {
	ft := newFakeTake()
	s := newSnapshotter(100, testConfig(t, time.Hour), ft.take)
	if st := dirStatus(t, s); st.State != stateNone || st.Snapshot != nil || !st.Since.IsZero() {
		t.Fatalf("before any snapshot: %+v", st)
	}

	before := time.Now()
	img := getAsync(context.Background(), s, true, true)
	call := ft.next(t)
	if st := dirStatus(t, s); st.State != stateFreezing || st.Since.Before(before) {
		t.Fatalf("while the capture runs: %+v", st)
	}
	lay := figuredLayout(100)
	call.reply <- takeReply{lay: lay}
	g := result(t, "open image", img)
	if g.err != nil {
		t.Fatal(g.err)
	}
	st := dirStatus(t, s)
	if st.State != stateFrozen || st.Error != "" {
		t.Fatalf("with the snapshot taken: %+v", st)
	}
	checkFigures(t, "frozen", st.Snapshot, lay, g.snap.taken)
	if !st.Snapshot.Released.IsZero() {
		t.Errorf("frozen, yet released at %v", st.Snapshot.Released)
	}

	pids := result(t, "open pids", getAsync(context.Background(), s, true, false))
	g.snap.stats.read(100, time.Now())
	lay.readThrough()
	s.put(g.snap, true)
	st = dirStatus(t, s)
	if st.State != stateReleased {
		t.Fatalf("image read through and closed, pids still open: %+v, want released", st)
	}
	if st.Snapshot.Released.IsZero() || !st.Snapshot.ReadThrough || st.Snapshot.BytesRead != 100 {
		t.Errorf("released: %+v", st.Snapshot)
	}
	frozen := st.Snapshot.FrozenMS
	time.Sleep(5 * time.Millisecond)
	if again := dirStatus(t, s); again.Snapshot.FrozenMS != frozen {
		t.Errorf("frozen time still grows after the release: %v ms, then %v ms", frozen, again.Snapshot.FrozenMS)
	}

	s.put(pids.snap, false)
	st = dirStatus(t, s)
	if st.State != stateNone {
		t.Fatalf("with every file closed: %+v, want none", st)
	}
	checkFigures(t, "after", st.Snapshot, lay, g.snap.taken)
	ft.noCall(t)
}

// A refused capture leaves its error in the status, exactly as the daemon
// logs it, with the errno the reader got and when; the next capture
// clears it.
func TestStatusRefusal(t *testing.T) {
	ft := newFakeTake()
	s := newSnapshotter(100, testConfig(t, time.Hour), ft.take)
	refusal := &checkpoint.TaskError{Pid: 123, What: "read files",
		Err: fmt.Errorf("fd 0 is a terminal (/dev/pts/0): %w", checkpoint.ErrExternal)}
	before := time.Now()
	got := getAsync(context.Background(), s, false, false)
	ft.next(t).reply <- takeReply{err: refusal}
	g := result(t, "the refused stat", got)
	if g.err == nil {
		t.Fatal("refused capture succeeded")
	}
	if e := errno(g.err); e != syscall.EOPNOTSUPP {
		t.Fatalf("the reader got %v, want EOPNOTSUPP", e)
	}
	st := dirStatus(t, s)
	want := "pid 123: read files: fd 0 is a terminal (/dev/pts/0): checkpoint: descriptor leads outside the tree (ask to replace it): operation not supported"
	if st.State != stateFailed || st.Error != want || st.Errno != "EOPNOTSUPP" || st.Snapshot != nil {
		t.Errorf("after the refusal: %+v, want failed with %q, EOPNOTSUPP", st, want)
	}
	if st.Since.Before(before) || st.Since.After(time.Now()) {
		t.Errorf("failed since %v, not when it happened", st.Since)
	}

	again := getAsync(context.Background(), s, false, false)
	call := ft.next(t)
	if st := dirStatus(t, s); st.State != stateFreezing || st.Error != "" || st.Errno != "" {
		t.Errorf("a new capture: %+v, want freezing and no error", st)
	}
	call.reply <- takeReply{lay: figuredLayout(10)}
	result(t, "the new stat", again)
	if st := dirStatus(t, s); st.State != stateFrozen {
		t.Errorf("after the new capture: %+v", st)
	}
}

// A snapshot whose tree loses a process fails: the status says so, with
// the layout's error and EIO, and the snapshot's figures, released.
func TestStatusSnapshotFails(t *testing.T) {
	ft := newFakeTake()
	s := newSnapshotter(100, testConfig(t, time.Hour), ft.take)
	got := getAsync(context.Background(), s, true, true)
	lay := figuredLayout(100)
	ft.next(t).reply <- takeReply{lay: lay}
	g := result(t, "open", got)
	if g.err != nil {
		t.Fatal(g.err)
	}
	gone := &checkpoint.TaskError{Pid: 124, What: "frozen for an image", Err: checkpoint.ErrGone}
	lay.fail(gone)
	until(t, "the status says failed", func() bool { return dirStatus(t, s).State == stateFailed })
	st := dirStatus(t, s)
	if st.Error != gone.Error() || st.Errno != "EIO" {
		t.Errorf("failed snapshot: %+v, want %q, EIO", st, gone)
	}
	if st.Snapshot == nil || st.Snapshot.Released.IsZero() {
		t.Errorf("failed snapshot's figures: %+v, want released", st.Snapshot)
	}
	s.put(g.snap, true)
	if st := dirStatus(t, s); st.State != stateFailed {
		t.Errorf("after its file was closed: %+v, still failed until the next capture", st)
	}
}

// A capture that every reader gave up on is told as failed with EINTR,
// what its readers got.
func TestStatusAbandoned(t *testing.T) {
	ft := newFakeTake()
	s := newSnapshotter(100, testConfig(t, time.Hour), ft.take)
	ctx, cancel := context.WithCancel(context.Background())
	got := getAsync(ctx, s, false, false)
	call := ft.next(t)
	until(t, "the request waits", func() bool { return s.waiting() == 1 })
	cancel()
	if g := result(t, "interrupted", got); !errors.Is(g.err, syscall.EINTR) {
		t.Fatalf("%v, want EINTR", g.err)
	}
	waitClosed(t, "the capture's cancellation", call.ctx.Done())
	until(t, "the status says failed", func() bool { return dirStatus(t, s).State == stateFailed })
	if st := dirStatus(t, s); st.Errno != "EINTR" || st.Error == "" {
		t.Errorf("abandoned: %+v, want failed with EINTR", st)
	}
}

// A reader who may not read the tree's checkpoint sees its state only.
func TestStatusWithheld(t *testing.T) {
	rec := newDirRecord()
	rec.captureFailed(errors.New("pid 7: access: secret"), syscall.EACCES, time.Now())
	var fields map[string]any
	if err := json.Unmarshal(renderStatus(7, rec.view(), time.Now(), false), &fields); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"pid", "state", "withheld"}) || fields["state"] != stateFailed {
		t.Errorf("withheld status %v, want pid, state (failed) and withheld only", fields)
	}
}

// The status file, through its node: reading it (stat, open, read) never
// starts a capture, before or during a snapshot; it tells the snapshot's
// reads; the directory's mtime is the process's start time before any
// snapshot and the snapshot's time after one, as the section files' is.
func TestStatusFile(t *testing.T) {
	ft := newFakeTake()
	r := newRoot(testConfig(t, time.Hour))
	r.take = ft.take
	dir := procDirOf(t, r)
	status := &statusFile{dir: dir}

	st := readStatusFile(t, status)
	if st.State != stateNone || st.Pid != dir.key.pid {
		t.Fatalf("before any snapshot: %+v", st)
	}
	var dattr fuse.AttrOut
	if e := dir.Getattr(fuseContext(nil), nil, &dattr); e != 0 {
		t.Fatal(e)
	}
	start := time.Unix(int64(dattr.Mtime), int64(dattr.Mtimensec))
	if want := startedAt(dir.key.start); !start.Equal(want) || time.Since(start) > time.Minute || time.Since(start) < 0 {
		t.Errorf("the directory's mtime before any snapshot is %v, want the process's start %v", start, want)
	}
	ft.noCall(t)

	image := &sectionFile{dir: dir, kind: kindImage}
	type opened struct {
		fh    any
		errno syscall.Errno
	}
	ch := make(chan opened, 1)
	go func() {
		fh, _, e := image.Open(fuseContext(nil), syscall.O_RDONLY)
		ch <- opened{fh, e}
	}()
	call := ft.next(t)
	if st := readStatusFile(t, status); st.State != stateFreezing {
		t.Errorf("while the capture runs: %+v", st)
	}
	lay := figuredLayout(64 << 10)
	call.reply <- takeReply{lay: lay}
	var o opened
	within(t, "open image", func() { o = <-ch })
	if o.errno != 0 {
		t.Fatal(o.errno)
	}
	h := o.fh.(*sectionHandle)
	if _, e := h.Read(fuseContext(nil), make([]byte, 10), 0); e != 0 {
		t.Fatal(e)
	}
	st = readStatusFile(t, status)
	if st.State != stateFrozen || st.Snapshot == nil || st.Snapshot.BytesRead < 10 || st.Snapshot.Bytes != 64<<10 {
		t.Errorf("with the image open and read: %+v %+v", st, st.Snapshot)
	}
	if e := dir.Getattr(fuseContext(nil), nil, &dattr); e != 0 {
		t.Fatal(e)
	}
	var iattr fuse.AttrOut
	if e := image.Getattr(fuseContext(nil), nil, &iattr); e != 0 {
		t.Fatal(e)
	}
	mtime := time.Unix(int64(dattr.Mtime), int64(dattr.Mtimensec))
	if !mtime.Equal(h.snap.taken) || !st.Snapshot.Time.Equal(h.snap.taken) || iattr.Mtime != dattr.Mtime || iattr.Mtimensec != dattr.Mtimensec {
		t.Errorf("directory mtime %v, image's %d.%09d, status's snapshot time %v; want the snapshot's %v",
			mtime, iattr.Mtime, iattr.Mtimensec, st.Snapshot.Time, h.snap.taken)
	}
	h.Release(fuseContext(nil))
	ft.noCall(t)
}

// readStatusFile stats, opens and reads a status file, as cat would, and
// checks that the sizes agree.
func readStatusFile(t *testing.T, f *statusFile) DirStatus {
	t.Helper()
	var attr fuse.AttrOut
	if e := f.Getattr(fuseContext(nil), nil, &attr); e != 0 {
		t.Fatalf("stat status: %v", e)
	}
	if attr.Mode&0o777 != 0o444 {
		t.Errorf("status mode %o, want 0444", attr.Mode&0o777)
	}
	fh, _, e := f.Open(fuseContext(nil), syscall.O_RDONLY)
	if e != 0 {
		t.Fatalf("open status: %v", e)
	}
	h := fh.(*statusHandle)
	var data []byte
	for {
		res, e := h.Read(fuseContext(nil), make([]byte, 64), int64(len(data)))
		if e != 0 {
			t.Fatalf("read status: %v", e)
		}
		b, _ := res.Bytes(nil)
		if len(b) == 0 {
			break
		}
		data = append(data, b...)
	}
	var fattr fuse.AttrOut
	f.Getattr(fuseContext(nil), fh, &fattr)
	if fattr.Size != uint64(len(data)) {
		t.Errorf("read %d bytes of status, its fstat says %d", len(data), fattr.Size)
	}
	return parseStatus(t, data)
}

// A directory's record outlives its keeper, which the root drops when
// idle: a failure is still told after other directories were used.
func TestStatusRecordOutlivesKeeper(t *testing.T) {
	ft := newFakeTake()
	r := newRoot(testConfig(t, time.Hour))
	r.take = ft.take
	a, b := procKey{100, 1}, procKey{200, 1}
	sa := r.snapshotter(a)
	got := getAsync(context.Background(), sa, false, false)
	ft.next(t).reply <- takeReply{err: fmt.Errorf("pid 100: freeze: %w", checkpoint.ErrSelf)}
	result(t, "refused", got)
	r.snapshotter(b) // sweeps A's idle keeper away
	if !sa.gone.Load() {
		t.Fatal("A's idle keeper was not dropped")
	}
	rec := r.recordOf(a)
	if rec == nil {
		t.Fatal("A's record went with its keeper")
	}
	if v := rec.view(); v.state != stateFailed || errnoName(v.errno) != "EDEADLK" {
		t.Errorf("A's record: %s, %v", v.state, v.errno)
	}
	if r.snapshotter(a).rec != rec {
		t.Error("A's new keeper does not report to its record")
	}
}

// Records are bounded: past maxRecords, those of processes gone go first.
func TestStatusRecordsBounded(t *testing.T) {
	r := newRoot(testConfig(t, time.Hour))
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range maxRecords {
		// Above the kernel's pid_max limit: no such process.
		r.recordLocked(procKey{pid: 1<<22 + 1 + i, start: 1}, true)
	}
	r.recordLocked(procKey{pid: 1<<23 + 1, start: 1}, true)
	if n := len(r.records); n > maxRecords*3/4+1 {
		t.Errorf("%d records kept, want at most %d", n, maxRecords*3/4+1)
	}
}
