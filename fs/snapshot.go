package fs

import (
	"bufio"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// snapshot is one checkpoint of a subtree, shared by its three files. The
// image is spooled into a memfd: its size is known before anyone reads, and
// the kernel can serve reads of it straight from the memfd (FUSE
// passthrough) at memory speed.
type snapshot struct {
	spool   *os.File
	res     *checkpoint.Result
	taken   time.Time
	lastUse time.Time
	refs    int  // open file handles
	current bool // still the keeper's snapshot
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
	return s.spool.ReadAt(dest[:n], sec.Off+off)
}

func (s *snapshot) fillAttr(kind int, out *fuse.Attr) {
	out.Mode = fuse.S_IFREG | 0o400
	out.Size = uint64(s.section(kind).Len)
	out.Blocks = (out.Size + 511) / 512
	out.Nlink = 1
	out.SetTimes(&s.taken, &s.taken, &s.taken)
}

// dropIfUnused frees the spool of a snapshot nobody can reach any more.
func (s *snapshot) dropIfUnused() {
	if s.refs == 0 && !s.current && s.spool != nil {
		s.spool.Close()
		s.spool = nil
	}
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

// idle reports whether nothing of this keeper is in use; it then frees the
// spool of its expired snapshot.
func (s *snapshotter) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live(time.Now()) {
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
// has expired; hold pins it until put. The caller's right to read is checked
// every time: a snapshot taken for one reader is served to another only if
// that one could have ptraced every task of it as it was.
func (s *snapshotter) get(caller checkpoint.Caller, hold bool) (*snapshot, error) {
	access, err := caller.Access()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live(time.Now()) {
		for _, m := range s.cur.res.Members {
			if err := access.Check(m); err != nil {
				return nil, err
			}
		}
	} else {
		s.retire()
		snap, err := s.take(access.Allow)
		if err != nil {
			return nil, err
		}
		s.cur = snap
	}
	s.cur.lastUse = time.Now()
	if hold {
		s.cur.refs++
	} else {
		s.expireLater()
	}
	return s.cur, nil
}

// expireLater frees the snapshot's spool once its grace period has passed
// unused: an image can be large, and nobody may come back for it.
func (s *snapshotter) expireLater() {
	time.AfterFunc(s.cfg.Grace+10*time.Millisecond, func() { s.idle() })
}

// put releases a snapshot pinned by get.
func (s *snapshotter) put(snap *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap.refs--
	snap.lastUse = time.Now()
	snap.dropIfUnused()
	if snap.refs == 0 {
		s.expireLater()
	}
}

// take checkpoints the subtree into a new spool. Its time is strictly after
// the previous snapshot's, so that backup tools see every new snapshot as
// changed.
func (s *snapshotter) take(allow func(tgid, tid int) error) (*snapshot, error) {
	fd, err := unix.MemfdCreate(fmt.Sprintf("ckptfs-%d", s.pid), unix.MFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	spool := os.NewFile(uintptr(fd), "ckptfs-spool")
	w := bufio.NewWriterSize(spool, 1<<20)
	res, err := checkpoint.Write(w, s.pid, checkpoint.Options{Mode: s.cfg.Mode, Allow: allow, ReplaceExternal: s.cfg.ReplaceExternal})
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		spool.Close()
		return nil, err
	}
	taken := time.Now()
	if !taken.After(s.last) {
		taken = s.last.Add(time.Nanosecond)
	}
	s.last = taken
	return &snapshot{spool: spool, res: res, taken: taken, current: true}, nil
}
