package fs

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// snapshot is one checkpoint of a subtree, shared by its three files.
type snapshot struct {
	data    []byte
	res     *checkpoint.Result
	taken   time.Time
	refs    int // open file handles
	lastUse time.Time
}

// section returns the bytes a file of the given kind serves.
func (s *snapshot) section(kind int) []byte {
	switch kind {
	case kindPids:
		return s.data[s.res.Pids.Off : s.res.Pids.Off+s.res.Pids.Len]
	case kindTree:
		return s.data[s.res.Tree.Off : s.res.Tree.Off+s.res.Tree.Len]
	}
	return s.data
}

func (s *snapshot) readAt(kind int, dest []byte, off int64) (int, error) {
	b := s.section(kind)
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= int64(len(b)) {
		return 0, nil
	}
	return copy(dest, b[off:]), nil
}

func (s *snapshot) fillAttr(kind int, out *fuse.Attr) {
	out.Mode = fuse.S_IFREG | 0o400
	out.Size = uint64(len(s.section(kind)))
	out.Blocks = (out.Size + 511) / 512
	out.Nlink = 1
	out.SetTimes(&s.taken, &s.taken, &s.taken)
}

// snapshotter keeps the current snapshot of one process directory. A
// snapshot is taken on first use, kept while any file of it is open plus a
// grace period after the last use, and replaced on the next use after that.
type snapshotter struct {
	pid int
	cfg *Config

	mu   sync.Mutex // held while a checkpoint runs: readers share it
	cur  *snapshot
	last time.Time // when the previous snapshot was taken
}

func newSnapshotter(pid int, cfg *Config) *snapshotter {
	return &snapshotter{pid: pid, cfg: cfg}
}

// live reports whether the current snapshot may still be served.
func (s *snapshotter) live(now time.Time) bool {
	return s.cur != nil && (s.cur.refs > 0 || now.Sub(s.cur.lastUse) < s.cfg.Grace)
}

// idle reports whether nothing of this keeper is in use.
func (s *snapshotter) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.live(time.Now())
}

// get returns the snapshot for caller, taking a new one if the current one
// has expired; hold pins it until put. The caller's right to read is checked
// every time: a snapshot taken for one reader is served to another only if
// that one may ptrace every task of the tree as well.
func (s *snapshotter) get(caller checkpoint.Caller, hold bool) (*snapshot, error) {
	access, err := caller.Access()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.live(now) {
		for _, m := range s.cur.res.Members {
			if err := access.Check(m); err != nil {
				return nil, err
			}
		}
	} else {
		snap, err := s.take(access.Allow)
		if err != nil {
			return nil, err
		}
		s.cur = snap
	}
	s.cur.lastUse = time.Now()
	if hold {
		s.cur.refs++
	}
	return s.cur, nil
}

// put releases a snapshot pinned by get.
func (s *snapshotter) put(snap *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap.refs--
	snap.lastUse = time.Now()
}

// take checkpoints the subtree. Its time is strictly after the previous
// snapshot's, so that backup tools see every new snapshot as changed.
func (s *snapshotter) take(allow func(tgid, tid int) error) (*snapshot, error) {
	var buf bytes.Buffer
	res, err := checkpoint.Write(&buf, s.pid, checkpoint.Options{Mode: s.cfg.Mode, Allow: allow})
	if err != nil {
		return nil, err
	}
	taken := time.Now()
	if !taken.After(s.last) {
		taken = s.last.Add(time.Nanosecond)
	}
	s.last = taken
	return &snapshot{data: buf.Bytes(), res: res, taken: taken}, nil
}
