package fs

import (
	"context"
	"strconv"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/restart"
)

// root is the mount's top directory: a directory per live process,
// restore/ and shell-job/.
type root struct {
	gofs.Inode
	cfg     *Config
	take    takeFunc    // how snapshots are taken: nil for checkpoint.Lay
	restore restoreFunc // how images are restored: nil for restart.Restore
	mounted time.Time   // the times of / and, until it changes, restore/

	mu      sync.Mutex               // never held while a keeper's lock is taken
	snaps   map[procKey]*snapshotter // shared by every node of a process
	records map[procKey]*dirRecord   // what each directory's status tells (record.go)
}

// procKey identifies a process: a pid and its start time.
type procKey struct {
	pid   int
	start uint64
}

func newRoot(cfg *Config) *root {
	return &root{cfg: cfg, mounted: time.Now(), snaps: make(map[procKey]*snapshotter), records: make(map[procKey]*dirRecord)}
}

var _ = (gofs.NodeOnAdder)((*root)(nil))

func (r *root) OnAdd(ctx context.Context) {
	run := r.restore
	if run == nil {
		run = restart.Restore
	}
	for _, d := range restoreDirs {
		dir := newRestoreDir(d.name, r.cfg, run, d.terminal, r.mounted)
		r.AddChild(d.name, r.NewPersistentInode(ctx, dir, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: d.ino}), false)
	}
}

// isRestoreDir reports whether name is one of restoreDirs. (Only those:
// go-fuse also keeps the inodes of process directories looked up before,
// which may be of a process gone whose pid is now another's.)
func isRestoreDir(name string) bool {
	for _, d := range restoreDirs {
		if d.name == name {
			return true
		}
	}
	return false
}

// restoreDirs are the directories an image is written into to restore it.
var restoreDirs = []struct {
	name     string
	ino      uint64
	terminal bool
}{
	{"restore", inoRestore, false},
	{"shell-job", inoShellJob, true},
}

var _ = (gofs.NodeGetattrer)((*root)(nil))

func (r *root) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o555
	out.SetTimes(&r.mounted, &r.mounted, &r.mounted)
	return 0
}

var _ = (gofs.NodeReaddirer)((*root)(nil))

// Readdir lists the live processes, sorted by pid, then restore and
// shell-job.
func (r *root) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	pids, err := procfs.Pids()
	if err != nil {
		r.cfg.Logger.Printf("readdir /: %v", err)
		return nil, syscall.EIO
	}
	entries := make([]fuse.DirEntry, 0, len(pids)+1)
	for _, pid := range pids {
		if checkpoint.IsCopy(pid) {
			continue // a snapshot's copy of a process's memory: not a process to checkpoint
		}
		entries = append(entries, fuse.DirEntry{
			Name: strconv.Itoa(pid), Mode: fuse.S_IFDIR, Ino: pidIno(pid, kindDir),
		})
	}
	for _, d := range restoreDirs {
		entries = append(entries, fuse.DirEntry{Name: d.name, Mode: fuse.S_IFDIR, Ino: d.ino})
	}
	return gofs.NewListDirStream(entries), 0
}

var _ = (gofs.NodeLookuper)((*root)(nil))

func (r *root) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if isRestoreDir(name) {
		ch := r.GetChild(name)
		var attr fuse.AttrOut
		ch.Operations().(gofs.NodeGetattrer).Getattr(ctx, nil, &attr)
		out.Attr = attr.Attr
		return ch, 0
	}
	pid, err := strconv.Atoi(name)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != name || checkpoint.IsCopy(pid) {
		return nil, syscall.ENOENT
	}
	key, st, ok := lookupProcess(pid)
	if !ok {
		return nil, syscall.ENOENT
	}
	dir := &procDir{root: r, key: key}
	dir.fillAttr(st, &out.Attr)
	return r.NewInode(ctx, dir, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: pidIno(pid, kindDir), Gen: key.start}), 0
}

var _ = (gofs.NodeRmdirer)((*root)(nil))

// Rmdir refuses: restore/ and the process directories are the mount's
// own. (go-fuse answers success for a node without Rmdir, and forgets the
// child.)
func (r *root) Rmdir(ctx context.Context, name string) syscall.Errno {
	r.cfg.Logger.Printf("rmdir /%s: refused: the mount's directories cannot be removed", name)
	return syscall.EPERM
}

// lookupProcess finds process pid (not a mere thread) and its identity.
func lookupProcess(pid int) (procKey, *procfs.Status, bool) {
	stat, err := procfs.ReadStat(pid)
	if err != nil {
		return procKey{}, nil, false
	}
	st, err := procfs.ReadStatus(pid)
	if err != nil || st.Tgid != pid {
		return procKey{}, nil, false
	}
	return procKey{pid, stat.StartTime}, st, true
}

// snapshotter returns the snapshot keeper of a process, shared by every
// inode the kernel holds for it. Keepers of other processes that are idle
// are dropped on the way (their snapshots have expired). Each keeper is
// asked without holding mu: a keeper's lock is short, but the root's must
// never wait for any one directory.
func (r *root) snapshotter(key procKey) *snapshotter {
	r.mu.Lock()
	s := r.snaps[key]
	if s == nil || s.gone.Load() {
		s = newSnapshotter(key.pid, r.cfg, r.take)
		s.rec = r.recordLocked(key, true)
		r.snaps[key] = s
	}
	others := r.others(key)
	r.mu.Unlock()
	for _, o := range others {
		if o.s.idle() {
			r.mu.Lock()
			if r.snaps[o.key] == o.s {
				delete(r.snaps, o.key)
			}
			r.mu.Unlock()
		}
	}
	return s
}

// keyed is an entry of root.snaps.
type keyed struct {
	key procKey
	s   *snapshotter
}

// others copies the keepers of other processes than key's. Called with mu
// held.
func (r *root) others(key procKey) []keyed {
	others := make([]keyed, 0, len(r.snaps))
	for k, s := range r.snaps {
		if k != key {
			others = append(others, keyed{k, s})
		}
	}
	return others
}

// retireUnused drops the snapshots of other directories than key's of
// which no file is open, letting their trees run, and reports whether it
// dropped any.
func (r *root) retireUnused(key procKey) bool {
	r.mu.Lock()
	others := r.others(key)
	r.mu.Unlock()
	dropped := false
	for _, o := range others {
		if o.s.retireUnused() {
			dropped = true
		}
	}
	return dropped
}
