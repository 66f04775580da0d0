package fs

import (
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// The states of a process directory's snapshot, as <pid>/status names
// them (see DirStatus).
const (
	// stateNone: no snapshot is held: none was ever taken, or the last
	// one expired and its tree runs.
	stateNone = "none"
	// stateFreezing: a capture is under way (the tree is being frozen and
	// laid out).
	stateFreezing = "freezing"
	// stateFrozen: a snapshot is held and its tree is frozen: its image
	// has not been read through, or a file of it is open, or its grace
	// period is not over.
	stateFrozen = "frozen"
	// stateReleased: the snapshot's tree runs again (its image was read
	// through), and the snapshot is still served to files open on it.
	stateReleased = "released"
	// stateFailed: the last capture failed (it was refused, or gave up),
	// or the snapshot failed (a process of its tree vanished, a read of
	// its memory failed). The next use tries again.
	stateFailed = "failed"
)

// dirRecord is what a process directory's status file tells: the state
// of its latest snapshot, the snapshot's figures, or why it failed. The
// directory's keeper (snapshotter) reports each step to it; the status
// file only reads it, so that reading the status never freezes anything,
// starts a capture, or waits for one. A record outlives its keeper (which
// the root drops when idle), so that a failure is still told after other
// directories were used; the root bounds how many it keeps (records).
type dirRecord struct {
	mu    sync.Mutex
	state string
	since time.Time     // when state began
	snap  *snapStats    // the latest snapshot; nil before any, and after a failed capture
	err   error         // why it failed, in state failed
	errno syscall.Errno // what the reader got for err
	// lastTaken is when the latest snapshot was taken: the directory's
	// mtime, never reset, so that it never goes back in time.
	lastTaken time.Time
	touched   time.Time // the last change: the oldest records go first
}

func newDirRecord() *dirRecord {
	return &dirRecord{state: stateNone}
}

// set moves to state at now. Called with mu held.
func (r *dirRecord) set(state string, now time.Time) {
	r.state, r.since, r.touched = state, now, now
}

// freezing: a capture starts; whatever failed before is history.
func (r *dirRecord) freezing(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set(stateFreezing, now)
	r.err, r.errno = nil, 0
}

// captureFailed: the capture ended without a snapshot; errno is what its
// readers got.
func (r *dirRecord) captureFailed(err error, errno syscall.Errno, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set(stateFailed, now)
	r.snap, r.err, r.errno = nil, err, errno
}

// taken: a capture made snapshot st, its tree frozen.
func (r *dirRecord) taken(st *snapStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set(stateFrozen, st.taken)
	r.snap, r.err, r.errno = st, nil, 0
	r.lastTaken = st.taken
}

// released: the tree of st runs again while files of it are open.
func (r *dirRecord) released(st *snapStats, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snap == st && r.state == stateFrozen {
		r.set(stateReleased, now)
	}
}

// dropped: nothing serves st any more, and its tree runs.
func (r *dirRecord) dropped(st *snapStats, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snap == st && (r.state == stateFrozen || r.state == stateReleased) {
		r.set(stateNone, now)
	}
}

// snapshotFailed: st cannot be completed (a process of its tree vanished);
// the rest of its tree runs.
func (r *dirRecord) snapshotFailed(st *snapStats, err error, errno syscall.Errno, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snap == st && r.state != stateFreezing {
		r.set(stateFailed, now)
		r.err, r.errno = err, errno
	}
}

// recordView is a copy of a record, taken at once.
type recordView struct {
	state     string
	since     time.Time
	snap      *snapStats
	err       error
	errno     syscall.Errno
	lastTaken time.Time
}

func (r *dirRecord) view() recordView {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recordView{r.state, r.since, r.snap, r.err, r.errno, r.lastTaken}
}

// snapStats are the figures of one snapshot: what its capture measured,
// and how it has been used since. Its own lock keeps its readers (the
// status file) from ever waiting for the snapshot's keeper.
type snapStats struct {
	res         *checkpoint.Result
	taken       time.Time // the snapshot's time: its files' mtime
	frozenSince time.Time // when the first task of its tree was stopped

	mu       sync.Mutex
	released time.Time // when its tree was let go; zero while it is frozen
	// duplicated tells the memory the snapshot duplicates (its layout's
	// CopiedNow) while it lives; duplicatedAtEnd what it was when it ended.
	duplicated      func() int64
	duplicatedAtEnd int64
	readThrough     bool  // its image was read through, in order, once
	bytesRead       int64 // bytes its files served, all readers together
	firstRead       time.Time
	lastRead        time.Time
}

// newSnapStats describes a layout laid out at laid.
func newSnapStats(lay layout, taken, laid time.Time) *snapStats {
	res := lay.Result()
	return &snapStats{res: res, taken: taken, frozenSince: laid.Add(-res.Frozen), duplicated: lay.CopiedNow}
}

// end records what the snapshot duplicated when it ended.
func (st *snapStats) end() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.duplicated != nil {
		st.duplicatedAtEnd = st.duplicated()
		st.duplicated = nil
	}
}

// read counts n bytes served at now.
func (st *snapStats) read(n int, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.firstRead.IsZero() {
		st.firstRead = now
	}
	st.lastRead = now
	st.bytesRead += int64(n)
}

// release records when the tree was let go (the first time only), and
// whether the image had been read through by then.
func (st *snapStats) release(now time.Time, complete bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.released.IsZero() {
		st.released = now
	}
	st.readThrough = st.readThrough || complete
}

// records are the directories' records, by process, bounded: at most
// maxRecords, beyond which those of processes gone, then the oldest of
// directories not in use, are dropped.
const maxRecords = 4096

// record returns the record of key, made if create and there is none.
// Called with r.mu held.
func (r *root) recordLocked(key procKey, create bool) *dirRecord {
	rec := r.records[key]
	if rec == nil && create {
		if len(r.records) >= maxRecords {
			r.pruneRecordsLocked()
		}
		rec = newDirRecord()
		r.records[key] = rec
	}
	return rec
}

// recordOf returns the record of key, or nil if the directory has none
// (nothing was ever asked of it, or its record was dropped).
func (r *root) recordOf(key procKey) *dirRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recordLocked(key, false)
}

// pruneRecordsLocked drops the records of processes that are gone, then,
// if that is not enough, the least recently changed ones of directories
// without a keeper, down to three quarters of maxRecords. Called with r.mu
// held, before a record is added.
func (r *root) pruneRecordsLocked() {
	target := maxRecords * 3 / 4
	for key := range r.records {
		if s := r.snaps[key]; s != nil && !s.gone.Load() {
			continue
		}
		if st, err := procfs.ReadStat(key.pid); err != nil || st.StartTime != key.start {
			delete(r.records, key)
		}
	}
	if len(r.records) <= target {
		return
	}
	type aged struct {
		key     procKey
		touched time.Time
	}
	var idle []aged
	for key, rec := range r.records {
		if s := r.snaps[key]; s != nil && !s.gone.Load() {
			continue
		}
		rec.mu.Lock()
		idle = append(idle, aged{key, rec.touched})
		rec.mu.Unlock()
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].touched.Before(idle[j].touched) })
	for _, a := range idle {
		if len(r.records) <= target {
			return
		}
		delete(r.records, a.key)
	}
}
