package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/restart"
)

// restoreFile is restore/<name>. It behaves like a file that its writer
// owns:
//
//   - Writing to it starts a restore (restoreRun) of the image written;
//     reading it tells that restore's state (Outcome). Writing a new image
//     over a name whose restore has ended starts a new restore there, as
//     cp does over an existing file; while the restore under the name is
//     running (or being undone after a cancel), a new one is refused with
//     EBUSY, and the daemon logs why.
//   - It belongs to the restore's writer (the FUSE caller's uid and gid at
//     create, or at the open that wrote over the name), with mode 0600:
//     only the owner, or a caller with CAP_DAC_OVERRIDE (root), may read
//     it (CAP_DAC_READ_SEARCH suffices to read) or write a new image over
//     it; anyone else gets EACCES. See restoreDir for removing it.
type restoreFile struct {
	gofs.Inode
	dir  *restoreDir
	name string

	mu  sync.Mutex
	run *restoreRun // the latest restore under the name; never nil
}

// path is the file's name in the mount, for log lines.
func (f *restoreFile) path() string { return f.dir.name + "/" + f.name }

// current returns the latest restore under the name.
func (f *restoreFile) current() *restoreRun {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.run
}

// restart starts a new restore under the name for caller, unless the
// current one has not ended (EBUSY), or caller may not write over its
// owner's file (EACCES).
func (f *restoreFile) restart(caller checkpoint.Caller, opt restart.Options) (*restoreRun, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.run
	if done, _ := old.over(); !done {
		f.dir.cfg.Logger.Printf("%s: a new image from uid %d refused: the restore under this name is still running (%s); write it under another name, or once this one has ended",
			f.path(), caller.Uid, old.describe())
		return nil, syscall.EBUSY
	}
	if !actsAsOwner(caller, old.uid, unix.CAP_DAC_OVERRIDE) {
		f.dir.cfg.Logger.Printf("%s: a new image from uid %d refused: the file is uid %d's (mode 0600)", f.path(), caller.Uid, old.uid)
		return nil, syscall.EACCES
	}
	f.run = newRestoreRun(f.dir.cfg, f.path(), caller.Uid, caller.Gid, opt, f.dir.restore)
	return f.run, 0
}

var _ = (gofs.NodeGetattrer)((*restoreFile)(nil))

// Getattr describes the latest restore under the name (on an open file,
// the one that file reads or writes). While it restores, its size is the
// bytes of the image written so far, a progress ls -l shows; once it
// ended, the size of the outcome.
func (f *restoreFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	run := f.current()
	switch h := fh.(type) {
	case *statusHandle:
		// go-fuse hands a stat of the path the first open handle: only
		// one that reads the current restore describes the file.
		if h.run == run {
			out.Attr = h.attr
			return 0
		}
	case *restoreWriter:
		run = h.r
	}
	run.fillAttr(&out.Attr)
	return 0
}

// fillAttr describes the file as the run makes it.
func (r *restoreRun) fillAttr(out *fuse.Attr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out.Mode = fuse.S_IFREG | 0o600
	out.Uid, out.Gid = r.uid, r.gid
	out.Nlink = 1
	out.Size = uint64(r.size)
	if r.done {
		out.Size = uint64(len(r.outcome))
	}
	out.Blocks = (out.Size + 511) / 512
	// Writers such as cp size their buffers by st_blksize: large writes
	// mean fewer FUSE round trips for a large image.
	out.Blksize = 1 << 20
	out.SetTimes(&r.mtime, &r.mtime, &r.mtime)
}

var _ = (gofs.NodeOpener)((*restoreFile)(nil))

// Open for reading renders the status once (a cancelled restore's, once
// it has been undone: its outcome is then a moment away). Such a handle
// has no Flush: closing it never reports a restart's error, which is the
// writer's alone. Open for writing writes a new image over an ended
// restore (see restart).
func (f *restoreFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	caller, ok := callerOf(ctx)
	if !ok {
		return nil, 0, syscall.EIO
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return f.dir.overwrite(ctx, f, caller)
	}
	run := f.current()
	if !actsAsOwner(caller, run.uid, unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH) {
		f.dir.cfg.Logger.Printf("%s: read by uid %d refused: the file is uid %d's (mode 0600)", f.path(), caller.Uid, run.uid)
		return nil, 0, syscall.EACCES
	}
	if run.undoing() {
		ctx, served := untilCallerDies(ctx)
		defer served()
		select {
		case <-run.ended:
		case <-ctx.Done():
			return nil, 0, syscall.EINTR
		}
	}
	h := &statusHandle{data: run.status(), run: run}
	run.fillAttr(&h.attr)
	h.attr.Size = uint64(len(h.data))
	return h, fuse.FOPEN_DIRECT_IO, 0
}

var _ = (gofs.NodeSetattrer)((*restoreFile)(nil))

// Setattr accepts what writing a new image asks of a file and changes
// nothing: a truncation to the size it has (the kernel's O_TRUNC, which
// comes after the open that started the new restore, at 0 bytes), and
// times, which the restore keeps. An image is a stream, and a file's owner
// and mode are its restore's: any other change is EPERM.
func (f *restoreFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	run := f.current()
	if w, ok := fh.(*restoreWriter); ok {
		run = w.r
	}
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID) != 0 {
		f.dir.cfg.Logger.Printf("%s: chmod or chown refused: a restore's file belongs to its writer, mode 0600", f.path())
		return syscall.EPERM
	}
	if size, ok := in.GetSize(); ok {
		var attr fuse.Attr
		run.fillAttr(&attr)
		if uint64(size) != attr.Size {
			f.dir.cfg.Logger.Printf("%s: truncate to %d bytes refused: the file has %d; write a new image over it instead", f.path(), size, attr.Size)
			return syscall.EPERM
		}
	}
	run.fillAttr(&out.Attr)
	return 0
}

// lastEnded reports whether the latest restore under the name ended, and
// when.
func (f *restoreFile) lastEnded() (bool, time.Time) {
	return f.current().over()
}
