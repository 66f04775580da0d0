package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
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
	caller, ok := callerOf(ctx)
	if !ok {
		return syscall.EIO
	}
	s := f.dir.root.snapshotter(key)
	snap, err := s.get(caller, false)
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
	s := f.dir.root.snapshotter(key)
	snap, err := s.get(caller, true)
	if err != nil {
		return nil, 0, f.fail("open", err)
	}
	h := &sectionHandle{file: f, snap: snap, keeper: s}
	if f.kind == kindImage {
		// Passthrough (see PassthroughFd) where the kernel allows it;
		// else the page cache, which open invalidates (no KEEP_CACHE),
		// so one snapshot's bytes are never served for the next.
		return h, 0, 0
	}
	return h, fuse.FOPEN_DIRECT_IO, 0
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
}

var _ = (gofs.FileReader)((*sectionHandle)(nil))

func (h *sectionHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.snap.readAt(h.file.kind, dest, off)
	if err != nil {
		return nil, h.file.fail("read", err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

var _ = (gofs.FileReleaser)((*sectionHandle)(nil))

func (h *sectionHandle) Release(ctx context.Context) syscall.Errno {
	h.keeper.put(h.snap)
	return 0
}

var _ = (gofs.FilePassthroughFder)((*sectionHandle)(nil))

// PassthroughFd lets the kernel read the image straight from the snapshot's
// spool. go-fuse registers it once per inode while any handle is open, and
// every handle open at once reads the same snapshot, so the registered
// spool is always the right one.
func (h *sectionHandle) PassthroughFd() (int, bool) {
	if h.file.kind != kindImage {
		return 0, false
	}
	return int(h.snap.spool.Fd()), true
}
