package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// procDir is <pid>/: the subtree rooted at one process.
type procDir struct {
	gofs.Inode
	root *root
	key  procKey
}

var sectionNames = [...]string{kindPids: "pids", kindTree: "tree", kindImage: "image"}

// statusName is the status file's name (status.go).
const statusName = "status"

// fillAttr gives the directory its process's owner, as /proc does, and
// its times: mtime and atime say when its content last changed (see
// mtime); ctime is the process's start time, which never changes, so
// that tar, which warns about a directory whose ctime changed while it was
// archived, does not warn about the snapshot its own reads took.
func (d *procDir) fillAttr(st *procfs.Status, out *fuse.Attr) {
	out.Mode = fuse.S_IFDIR | 0o555
	out.Uid, out.Gid = uint32(st.Uid[1]), uint32(st.Gid[1])
	m, c := d.mtime(), d.born()
	out.SetTimes(&m, &m, &c)
}

// born is the process's start time (the mount's, if the boot time is
// unknown).
func (d *procDir) born() time.Time {
	if t := startedAt(d.key.start); !t.IsZero() {
		return t
	}
	return d.root.mounted
}

// mtime is the time of the directory's latest snapshot, or, before any,
// the process's start time: what changed last. Backup tools (rsync -a,
// tar) record it, and see a directory with a new snapshot as changed. It
// never goes back: a failed capture, or an expired snapshot, leaves it as
// it was.
func (d *procDir) mtime() time.Time {
	if rec := d.root.recordOf(d.key); rec != nil {
		if t := rec.view().lastTaken; !t.IsZero() {
			return t
		}
	}
	return d.born()
}

var _ = (gofs.NodeGetattrer)((*procDir)(nil))

func (d *procDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	key, st, ok := lookupProcess(d.key.pid)
	if !ok || key != d.key {
		return syscall.ENOENT
	}
	d.fillAttr(st, &out.Attr)
	return 0
}

var _ = (gofs.NodeReaddirer)((*procDir)(nil))

// Readdir lists status, then the three section files. Tools that read a
// directory in its order (tar) read the status first, before their own
// reads of the others take a snapshot and change it, and so archive a
// status whose size did not change under them.
func (d *procDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	entries := []fuse.DirEntry{{Name: statusName, Mode: fuse.S_IFREG, Ino: pidIno(d.key.pid, kindStatus)}}
	for kind := kindPids; kind <= kindImage; kind++ {
		entries = append(entries, fuse.DirEntry{
			Name: sectionNames[kind], Mode: fuse.S_IFREG, Ino: pidIno(d.key.pid, kind),
		})
	}
	return gofs.NewListDirStream(entries), 0
}

var _ = (gofs.NodeLookuper)((*procDir)(nil))

func (d *procDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name == statusName {
		f := &statusFile{dir: d}
		var attr fuse.AttrOut
		if errno := f.Getattr(ctx, nil, &attr); errno != 0 {
			return nil, errno
		}
		out.Attr = attr.Attr
		return d.NewInode(ctx, f, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: pidIno(d.key.pid, kindStatus), Gen: d.key.start}), 0
	}
	for kind := kindPids; kind <= kindImage; kind++ {
		if name != sectionNames[kind] {
			continue
		}
		f := &sectionFile{dir: d, kind: kind}
		var attr fuse.AttrOut
		if errno := f.Getattr(ctx, nil, &attr); errno != 0 {
			return nil, errno
		}
		out.Attr = attr.Attr
		return d.NewInode(ctx, f, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: pidIno(d.key.pid, kind), Gen: d.key.start}), 0
	}
	return nil, syscall.ENOENT
}

var _ = (gofs.NodeUnlinker)((*procDir)(nil))

// Unlink refuses, as /proc does: the files are the process's. (go-fuse
// answers success for a node without Unlink, and forgets the child.)
func (d *procDir) Unlink(ctx context.Context, name string) syscall.Errno {
	return syscall.EPERM
}
