package fs

import (
	"context"
	"sort"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/restart"
)

// restoreDir is restore/: an image written under a name here is restarted
// as it arrives, and the name then tells that restore's outcome
// (restore_file.go) until it is removed or forgotten (history.go).
//
// It is a directory like /tmp, mode 01777: anyone may write an image here
// (whose processes it may create: mayRestore), and a name belongs to its
// writer. rm removes a name whose restore has ended, if the caller owns it
// or has CAP_FOWNER (root), else EPERM, as in a sticky directory; the
// restore under a name still restoring cannot be removed (EBUSY). The
// restored tree runs on whatever becomes of its name.
//
// shell-job/ is the same directory for shell jobs: a descriptor of the
// image that led to a terminal gets the writer's terminal instead of
// /dev/null (callerTerminal), as ckptfs restore --shell-job gives its own.
// The foreground cannot follow: the restored tree is the daemon's, in
// another session than the writer's shell, so only the CLI, which is in
// that session, can make it the terminal's foreground job.
type restoreDir struct {
	gofs.Inode
	name     string // "restore" or "shell-job": for log lines
	cfg      *Config
	restore  restoreFunc // restart.Restore, or a test's fake
	terminal bool        // shell-job/: restores get the writer's terminal

	mu      sync.Mutex
	files   map[string]*restoreFile
	changed time.Time // the last name added or removed: the directory's mtime
}

func newRestoreDir(name string, cfg *Config, run restoreFunc, terminal bool, now time.Time) *restoreDir {
	return &restoreDir{name: name, cfg: cfg, restore: run, terminal: terminal, files: make(map[string]*restoreFile), changed: now}
}

// options are the restart's options for the caller of a create or open
// (mayRestore), with the caller's terminal in shell-job/. Their Terminal
// is the new run's to close, or the caller's if no run starts.
func (d *restoreDir) options(ctx context.Context, name string, caller checkpoint.Caller) (restart.Options, syscall.Errno) {
	opt, err := mayRestore(ctx)
	if err == nil && d.terminal {
		opt.Terminal, err = callerTerminal(caller.Pid)
	}
	if err != nil {
		d.cfg.Logger.Printf("%s/%s: %v", d.name, name, err)
		return restart.Options{}, errno(err)
	}
	return opt, 0
}

// dropTerminal closes the terminal of options no run took.
func dropTerminal(opt restart.Options) {
	if opt.Terminal != nil {
		opt.Terminal.Close()
	}
}

var _ = (gofs.NodeGetattrer)((*restoreDir)(nil))

func (d *restoreDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	out.Mode = fuse.S_IFDIR | 0o1777
	out.SetTimes(&d.changed, &d.changed, &d.changed)
	return 0
}

var _ = (gofs.NodeCreater)((*restoreDir)(nil))

// Create starts a restore under a new name, or over an existing one whose
// restore has ended (see restoreFile.restart; O_EXCL then fails with
// EEXIST).
func (d *restoreDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	caller, ok := callerOf(ctx)
	if !ok {
		return nil, nil, 0, syscall.EIO
	}
	opt, e := d.options(ctx, name, caller)
	if e != 0 {
		return nil, nil, 0, e
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.forgetLocked(now)
	f := d.files[name]
	var run *restoreRun
	if f != nil {
		if flags&syscall.O_EXCL != 0 {
			dropTerminal(opt)
			return nil, nil, 0, syscall.EEXIST
		}
		if run, e = f.restart(caller, opt); e != 0 {
			dropTerminal(opt)
			return nil, nil, 0, e
		}
	} else {
		run = newRestoreRun(d.cfg, d.name+"/"+name, caller.Uid, caller.Gid, opt, d.restore)
		f = &restoreFile{dir: d, name: name, run: run}
		d.NewInode(ctx, f, gofs.StableAttr{Mode: fuse.S_IFREG})
		d.files[name] = f
		d.changed = now
	}
	run.fillAttr(&out.Attr)
	return f.EmbeddedInode(), &restoreWriter{run}, fuse.FOPEN_DIRECT_IO, 0
}

// overwrite starts a new restore under f's name for an open for writing
// (cp over an existing name).
func (d *restoreDir) overwrite(ctx context.Context, f *restoreFile, caller checkpoint.Caller) (gofs.FileHandle, uint32, syscall.Errno) {
	opt, e := d.options(ctx, f.name, caller)
	if e != 0 {
		return nil, 0, e
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.files[f.name] != f {
		// Removed (or forgotten) since the kernel looked it up.
		dropTerminal(opt)
		return nil, 0, syscall.ENOENT
	}
	run, e := f.restart(caller, opt)
	if e != 0 {
		dropTerminal(opt)
		return nil, 0, e
	}
	return &restoreWriter{run}, fuse.FOPEN_DIRECT_IO, 0
}

var _ = (gofs.NodeLookuper)((*restoreDir)(nil))

func (d *restoreDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d.mu.Lock()
	d.forgetLocked(time.Now())
	f, ok := d.files[name]
	d.mu.Unlock()
	if !ok {
		return nil, syscall.ENOENT
	}
	f.current().fillAttr(&out.Attr)
	return f.EmbeddedInode(), 0
}

var _ = (gofs.NodeReaddirer)((*restoreDir)(nil))

func (d *restoreDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgetLocked(time.Now())
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

// Unlink forgets a restore that has ended (the restored tree runs on), if
// the caller owns its name or has CAP_FOWNER.
func (d *restoreDir) Unlink(ctx context.Context, name string) syscall.Errno {
	caller, ok := callerOf(ctx)
	if !ok {
		return syscall.EIO
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.files[name]
	if !ok {
		return syscall.ENOENT
	}
	run := f.current()
	if done, _ := run.over(); !done {
		d.cfg.Logger.Printf("%s/%s: rm by uid %d refused: the restore under this name is still running (%s)", d.name, name, caller.Uid, run.describe())
		return syscall.EBUSY
	}
	if !actsAsOwner(caller, run.uid, unix.CAP_FOWNER) {
		d.cfg.Logger.Printf("%s/%s: rm by uid %d refused: the name is uid %d's (%s/ is sticky)", d.name, name, caller.Uid, run.uid, d.name)
		return syscall.EPERM
	}
	delete(d.files, name)
	d.changed = time.Now()
	return 0
}
