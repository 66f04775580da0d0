package fs

import (
	"context"
	"errors"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// sectionFile is <pid>/pids, <pid>/tree or <pid>/image.
type sectionFile struct {
	gofs.Inode
	dir  *procDir
	kind int
}

func (f *sectionFile) name() string { return sectionNames[f.kind] }

var _ = (gofs.NodeGetattrer)((*sectionFile)(nil))

// Getattr takes (or reuses) the snapshot, so that the size is the one a read
// returns. On an open file it describes the snapshot that file reads,
// whatever newer one the directory may hold: tar's "file changed as we read
// it" check compares exactly this. A caller who may not read the file gets its owner and mode but
// causes no checkpoint: stat alone must not let anyone freeze a tree.
func (f *sectionFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*sectionHandle); ok {
		h.snap.fillAttr(f.kind, &out.Attr)
		return 0
	}
	key, st, ok := lookupProcess(f.dir.key.pid)
	if !ok || key != f.dir.key {
		return syscall.ENOENT
	}
	out.Mode = fuse.S_IFREG | 0o400
	out.Uid, out.Gid = uint32(st.Uid[1]), uint32(st.Gid[1])
	t := f.dir.mtime() // a caller refused below sees the directory's times
	out.SetTimes(&t, &t, &t)
	caller, ok := callerOf(ctx)
	if !ok {
		return syscall.EIO
	}
	ctx, served := untilCallerDies(ctx)
	defer served()
	snap, _, err := f.snapshot(ctx, key, caller, false)
	if err != nil {
		if isAccess(err) {
			return 0 // owner and mode only
		}
		return f.fail("stat", err)
	}
	snap.fillAttr(f.kind, &out.Attr)
	out.Uid, out.Gid = uint32(st.Uid[1]), uint32(st.Gid[1])
	return 0
}

var _ = (gofs.NodeOpener)((*sectionFile)(nil))

// Open pins the snapshot for as long as the file stays open.
func (f *sectionFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	caller, ok := callerOf(ctx)
	if !ok {
		return nil, 0, syscall.EIO
	}
	key, _, ok := lookupProcess(f.dir.key.pid)
	if !ok || key != f.dir.key {
		return nil, 0, syscall.ENOENT
	}
	ctx, served := untilCallerDies(ctx)
	defer served()
	snap, keeper, err := f.snapshot(ctx, key, caller, true)
	if err != nil {
		return nil, 0, f.fail("open", err)
	}
	h := &sectionHandle{file: f, snap: snap, keeper: keeper}
	if f.kind == kindImage {
		h.ahead = newReadAhead(snap.lay)
	}
	// Direct I/O: every read reaches the snapshot (no page cache to copy
	// through, nor to keep one snapshot's bytes for the next), in requests
	// as large as the reader's.
	return h, fuse.FOPEN_DIRECT_IO, 0
}

// snapshot gets the directory's snapshot for caller (see
// snapshotter.get), and the keeper it came from. A tree that a snapshot of
// another directory holds frozen (an ancestor's, or a descendant's, used
// within its grace period) is let go first, if no file of that snapshot is
// open. Waiting for a snapshot being taken ends when ctx is done.
func (f *sectionFile) snapshot(ctx context.Context, key procKey, caller checkpoint.Caller, hold bool) (*snapshot, *snapshotter, error) {
	image := hold && f.kind == kindImage
	retried := false
	for {
		s := f.dir.root.snapshotter(key)
		snap, err := s.get(ctx, caller, hold, image)
		switch {
		case errors.Is(err, errKeeperGone):
			continue // dropped as idle on our way: the root has a new one
		case errors.Is(err, checkpoint.ErrTraced) && !retried && f.dir.root.retireUnused(key):
			retried = true
			continue
		}
		return snap, s, err
	}
}

func (f *sectionFile) fail(op string, err error) syscall.Errno {
	f.dir.root.cfg.Logger.Printf("%s %d/%s: %v", op, f.dir.key.pid, f.name(), err)
	return errno(err)
}

// sectionHandle is an open section file: it reads one snapshot.
type sectionHandle struct {
	file   *sectionFile
	snap   *snapshot
	keeper *snapshotter
	ahead  *readAhead // the image's read-ahead; nil for pids and tree
}

var _ = (gofs.FileReader)((*sectionHandle)(nil))

func (h *sectionHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	ctx, served := untilCallerDies(ctx)
	defer served()
	var res fuse.ReadResult
	var err error
	if h.ahead != nil {
		res, err = h.ahead.read(ctx, dest, off)
	} else {
		var n int
		n, err = h.snap.readAt(h.file.kind, dest, off)
		res = fuse.ReadResultData(dest[:n])
	}
	if err == errInterrupted {
		return nil, h.file.fail("read", err) // the snapshot is intact
	}
	if err != nil {
		// The snapshot cannot be completed (a process of its tree
		// vanished): its tree is thawed, and the next use takes a new one.
		h.keeper.failed(h.snap, err)
		return nil, h.file.fail("read", err)
	}
	h.snap.stats.read(res.Size(), time.Now())
	return res, 0
}

var _ = (gofs.FileReleaser)((*sectionHandle)(nil))

func (h *sectionHandle) Release(ctx context.Context) syscall.Errno {
	if h.ahead != nil {
		h.ahead.close()
	}
	h.keeper.put(h.snap, h.ahead != nil)
	return 0
}
