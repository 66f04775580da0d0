package fs

import (
	"context"
	"sort"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// restoreDir is restore/: an image written here is restarted when closed,
// and stays listed with the outcome until removed.
type restoreDir struct {
	gofs.Inode
	cfg     *Config
	restore restoreFunc // restart.Restore

	mu    sync.Mutex
	files map[string]*restoreFile
}

var _ = (gofs.NodeGetattrer)((*restoreDir)(nil))

func (d *restoreDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o755
	return 0
}

var _ = (gofs.NodeCreater)((*restoreDir)(nil))

func (d *restoreDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	opt, err := mayRestore(ctx)
	if err != nil {
		d.cfg.Logger.Printf("restore/%s: %v", name, err)
		return nil, nil, 0, errno(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.files[name]; ok {
		return nil, nil, 0, syscall.EEXIST
	}
	f := newRestoreFile(d.cfg, name, opt, d.restore)
	if d.files == nil {
		d.files = make(map[string]*restoreFile)
	}
	d.files[name] = f
	ino := d.NewInode(ctx, f, gofs.StableAttr{Mode: fuse.S_IFREG})
	var attr fuse.AttrOut
	f.Getattr(ctx, nil, &attr)
	out.Attr = attr.Attr
	return ino, &restoreWriter{f}, fuse.FOPEN_DIRECT_IO, 0
}

var _ = (gofs.NodeLookuper)((*restoreDir)(nil))

func (d *restoreDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d.mu.Lock()
	f, ok := d.files[name]
	d.mu.Unlock()
	if !ok {
		return nil, syscall.ENOENT
	}
	var attr fuse.AttrOut
	f.Getattr(ctx, nil, &attr)
	out.Attr = attr.Attr
	return &f.Inode, 0
}

var _ = (gofs.NodeReaddirer)((*restoreDir)(nil))

func (d *restoreDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, 0, len(d.files))
	for name := range d.files {
		names = append(names, name)
	}
	sort.Strings(names)
	entries := make([]fuse.DirEntry, len(names))
	for i, name := range names {
		entries[i] = fuse.DirEntry{Name: name, Mode: fuse.S_IFREG}
	}
	return gofs.NewListDirStream(entries), 0
}

var _ = (gofs.NodeUnlinker)((*restoreDir)(nil))

// Unlink forgets an outcome (the restored tree runs on).
func (d *restoreDir) Unlink(ctx context.Context, name string) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.files[name]; !ok {
		return syscall.ENOENT
	}
	delete(d.files, name)
	return 0
}
