package fs

import (
	"context"
	"syscall"

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

// fillAttr gives the directory its process's owner, as /proc does.
func (d *procDir) fillAttr(st *procfs.Status, out *fuse.Attr) {
	out.Mode = fuse.S_IFDIR | 0o555
	out.Uid, out.Gid = uint32(st.Uid[1]), uint32(st.Gid[1])
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

func (d *procDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var entries []fuse.DirEntry
	for kind := kindPids; kind <= kindImage; kind++ {
		entries = append(entries, fuse.DirEntry{
			Name: sectionNames[kind], Mode: fuse.S_IFREG, Ino: pidIno(d.key.pid, kind),
		})
	}
	return gofs.NewListDirStream(entries), 0
}

var _ = (gofs.NodeLookuper)((*procDir)(nil))

func (d *procDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
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
