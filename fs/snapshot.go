package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// snapshot is one checkpoint of a subtree, shared by its three files. It
// is taken in two phases (checkpoint.Lay): on first use the tree is frozen
// and the image laid out, so its exact size and its pids and tree sections
// are known; then reads are served from the layout, page contents read
// from the frozen tree as they are asked for. In exchange for the first
// byte being served at once, and the image at the rate the tree's memory
// can be read (nothing is spooled: the daemon holds only the small records,
// and the pages of shared mappings, which processes outside the tree could
// change), the tree stays frozen while its image may still be read:
//
//   - while an image file of the snapshot is open;
//   - until the image has been read through once, in order, and closed:
//     then the tree runs on at once, while pids, tree and stat still serve
//     the snapshot as long as one of its files is open (an image opened
//     after that is a new snapshot);
//   - otherwise (stat only, pids or tree only, a partial read) until the
//     grace period after the last use is over.
//
// CRIU, too, keeps a tree stopped while it dumps it. A process of the tree
// that dies meanwhile (SIGKILL) fails the snapshot: reads fail with EIO, the
// error is logged, and the rest of the tree runs on at once.
type snapshot struct {
	lay       layout
	res       *checkpoint.Result
	stats     *snapStats // its figures, for the status file
	rec       *dirRecord // its directory's record, told when its tree runs
	taken     time.Time
	lastUse   time.Time
	refs      int  // open file handles, and waiters of its capture yet to take it
	imageRefs int  // open image handles among them
	thawed    bool // its tree runs: the image's pages can no longer be read
	failed    bool // a process of its tree vanished
	current   bool // still the keeper's snapshot
	dropped   chan struct{}
}

// section returns the byte range a file of the given kind serves.
func (s *snapshot) section(kind int) checkpoint.Section {
	switch kind {
	case kindPids:
		return s.res.Pids
	case kindTree:
		return s.res.Tree
	}
	return checkpoint.Section{Off: 0, Len: s.res.Size}
}

func (s *snapshot) readAt(kind int, dest []byte, off int64) (int, error) {
	sec := s.section(kind)
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= sec.Len {
		return 0, nil
	}
	n := min(int64(len(dest)), sec.Len-off)
	k, err := s.lay.ReadAt(dest[:n], sec.Off+off)
	if err == io.EOF {
		err = nil
	}
	return k, err
}

func (s *snapshot) fillAttr(kind int, out *fuse.Attr) {
	out.Mode = fuse.S_IFREG | 0o400
	out.Size = uint64(s.section(kind).Len)
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = maxRead // so that cat and cp ask for large reads
	out.Nlink = 1
	out.SetTimes(&s.taken, &s.taken, &s.taken)
}

// dropIfUnused thaws the tree of a snapshot nobody can reach any more.
func (s *snapshot) dropIfUnused() {
	if s.refs == 0 && !s.current && s.lay != nil {
		now := time.Now()
		s.stats.release(now, s.lay.Complete())
		s.stats.end()
		s.lay.Close()
		s.lay = nil
		close(s.dropped)
		s.rec.dropped(s.stats, now)
	}
}

// snapshotter keeps the current snapshot of one process directory. A
// snapshot is taken on first use, kept while any file of it is open plus a
// grace period after the last use (see snapshot for when its tree runs on
// earlier), and replaced on the next use after that. Taking one may take
// seconds (a task that will not stop is waited for): it runs on its own,
// shared by every request that wants it meanwhile (capture.go), and never
// under mu, which every request for the directory takes.
type snapshotter struct {
	pid  int
	cfg  *Config
	take takeFunc // checkpoint.Lay, or a test's fake
	// rec is told every step of the directory's snapshots, for its
	// status file; the root hands a new keeper the record of its
	// process, which outlives the keeper.
	rec *dirRecord

	mu     sync.Mutex // guards what follows; never held while a tree is frozen
	cur    *snapshot
	flight *capture  // the capture under way, if any
	last   time.Time // when the previous snapshot was taken
	// gone: the keeper was dropped from the root's map as idle. It is
	// set under mu, so a request that found the keeper before that sees
	// it and asks the root for the new one.
	gone atomic.Bool
}

func newSnapshotter(pid int, cfg *Config, take takeFunc) *snapshotter {
	if take == nil {
		take = lay
	}
	return &snapshotter{pid: pid, cfg: cfg, take: take, rec: newDirRecord()}
}

// errKeeperGone: the snapshotter was dropped as idle while a request was on
// its way to it; the request asks the root again.
var errKeeperGone = errors.New("snapshot keeper dropped")

// live reports whether the current snapshot may still be served. A thawed
// one lives only while a file of it is open; a failed one not at all.
func (s *snapshotter) live(now time.Time) bool {
	c := s.cur
	return c != nil && !c.failed && (c.refs > 0 || !c.thawed && now.Sub(c.lastUse) < s.cfg.Grace)
}

// idle reports whether nothing of this keeper is in use, and if so drops
// its expired snapshot and marks the keeper gone: the root forgets it.
func (s *snapshotter) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flight != nil || s.live(time.Now()) {
		return false
	}
	s.retire()
	s.gone.Store(true)
	return true
}

// expire drops the current snapshot once it is no longer live.
func (s *snapshotter) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.live(time.Now()) {
		s.retire()
	}
}

// retireUnused drops the current snapshot if no file of it is open,
// before its grace period is over, and reports whether it did.
func (s *snapshotter) retireUnused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || s.cur.refs > 0 {
		return false
	}
	s.retire()
	return true
}

// retire stops serving the current snapshot.
func (s *snapshotter) retire() {
	if s.cur != nil {
		s.cur.current = false
		s.cur.dropIfUnused()
		s.cur = nil
	}
}

// get returns the snapshot for caller, taking a new one if the current one
// has expired; hold pins it until put, and image says the pin is an open
// image file, which needs a tree still frozen. The caller's right to read
// is checked every time: a snapshot taken for one reader is served to
// another only if that one could have ptraced every task of it as it was.
// A request waiting for a snapshot being taken gives up when ctx is done
// (the caller got a signal), with errInterrupted.
func (s *snapshotter) get(ctx context.Context, caller checkpoint.Caller, hold, image bool) (*snapshot, error) {
	access, err := caller.Access()
	if err != nil {
		return nil, err
	}
	for {
		s.mu.Lock()
		if s.gone.Load() {
			s.mu.Unlock()
			return nil, errKeeperGone
		}
		if s.live(time.Now()) && !(image && s.cur.thawed) {
			snap := s.cur
			err := check(access, snap.res)
			if err == nil {
				s.pin(snap, hold, image)
			}
			s.mu.Unlock()
			if err != nil {
				return nil, err
			}
			return snap, nil
		}
		c := s.flight
		if c == nil {
			s.retire()
			c = s.start(access)
		}
		if c.cancelled {
			// Every request for it left, and it is being undone: its
			// tree is not free to freeze again until it is.
			s.mu.Unlock()
			select {
			case <-c.done:
				continue
			case <-ctx.Done():
				return nil, errInterrupted
			}
		}
		c.waiters++
		s.mu.Unlock()
		snap, err, again := s.await(ctx, c, access, hold, image)
		if !again {
			return snap, err
		}
	}
}

// check applies access to every task of res.
func check(access *checkpoint.Access, res *checkpoint.Result) error {
	for _, m := range res.Members {
		if err := access.Check(m); err != nil {
			return err
		}
	}
	return nil
}

// pin records a use of snap by get, which holds it open or not.
func (s *snapshotter) pin(snap *snapshot, hold, image bool) {
	snap.lastUse = time.Now()
	if hold {
		snap.refs++
		if image {
			snap.imageRefs++
		}
		return
	}
	snap.dropIfUnused() // retired while its capture's waiters came for it
	s.expireLater()
}

// expireLater drops the snapshot, thawing its tree, once its grace period
// has passed unused.
func (s *snapshotter) expireLater() {
	time.AfterFunc(s.cfg.Grace+10*time.Millisecond, s.expire)
}

// put releases a snapshot pinned by get. The last image file closed after
// the image was read through lets the tree run on.
func (s *snapshotter) put(snap *snapshot, image bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap.refs--
	snap.lastUse = time.Now()
	if image {
		snap.imageRefs--
		if snap.imageRefs == 0 && !snap.thawed && snap.lay.Complete() {
			snap.lay.Thaw()
			snap.thawed = true
			snap.stats.release(snap.lastUse, true)
			snap.rec.released(snap.stats, snap.lastUse)
		}
	}
	snap.dropIfUnused()
	if snap.refs == 0 {
		if snap.thawed && s.cur == snap {
			s.retire()
			return
		}
		s.expireLater()
	}
}

// failed retires snap if it is still the current snapshot: a process of its
// tree vanished and the rest was thawed (err says which), so the next use
// takes a new one.
func (s *snapshotter) failed(snap *snapshot, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !snap.failed {
		snap.failed = true
		snap.stats.release(now, false)
		snap.rec.snapshotFailed(snap.stats, err, errno(err), now)
	}
	if s.cur == snap {
		s.retire()
	}
}

// install makes a new layout, laid out at laid, the current snapshot,
// with pins for the requests that waited for it. Its time is strictly
// after the previous snapshot's, so that backup tools see every new
// snapshot as changed. Called with mu held.
func (s *snapshotter) install(lay layout, laid time.Time, pins int) *snapshot {
	// The snapshot's time is when its capture began (the freeze): what
	// the image holds is the tree of that instant.
	taken := laid.Add(-lay.Result().Capture)
	if last := s.rec.view().lastTaken; last.After(s.last) {
		s.last = last // the directory's, from an earlier keeper
	}
	if !taken.After(s.last) {
		taken = s.last.Add(time.Nanosecond)
	}
	s.last = taken
	res := lay.Result()
	snap := &snapshot{
		lay: lay, res: res, stats: newSnapStats(lay, taken, laid), rec: s.rec,
		taken: taken, lastUse: taken, refs: pins, current: true, dropped: make(chan struct{}),
	}
	s.cur = snap
	s.rec.taken(snap.stats)
	if at := lay.Released(); !at.IsZero() {
		// Its tree runs on already, its pages copied: the snapshot lives
		// on as any other, only no longer frozen.
		snap.stats.release(at, false)
		s.rec.released(snap.stats, at)
	}
	go func() {
		select {
		case <-lay.Failed():
			err := lay.Err()
			s.cfg.Logger.Printf("snapshot of %d: %v", s.pid, err)
			s.failed(snap, err)
		case <-snap.dropped:
		}
	}()
	return snap
}
