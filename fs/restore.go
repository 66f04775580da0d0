package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// restoreDir is restore/: an image written here is restarted when closed.
type restoreDir struct {
	gofs.Inode
	cfg *Config
}

var _ = (gofs.NodeGetattrer)((*restoreDir)(nil))

func (d *restoreDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o755
	return 0
}

var _ = (gofs.NodeCreater)((*restoreDir)(nil))

// Create refuses for now: restart is not built yet, and accepting an image
// only to drop it would lose the user's data silently.
func (d *restoreDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	d.cfg.Logger.Printf("restore/%s: restart is not implemented yet", name)
	return nil, nil, 0, syscall.ENOTSUP
}
