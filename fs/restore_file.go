package fs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/restart"
)

// restoreFile is restore/<name>: while open for writing it collects an
// image; when closed it restarts it, and from then on reading it tells the
// outcome as JSON.
type restoreFile struct {
	gofs.Inode
	cfg  *Config
	name string

	mu      sync.Mutex
	spool   *os.File // the image as written, until restarted
	size    int64
	done    bool
	errno   syscall.Errno
	outcome []byte // JSON
	mtime   time.Time
}

// Outcome is what reading restore/<name> returns once the restart ran.
type Outcome struct {
	State string        `json:"state"` // "running" or "failed"
	Error string        `json:"error,omitempty"`
	Root  int           `json:"root,omitempty"` // the new root's pid in the daemon's namespace
	Seed  int           `json:"seed,omitempty"` // its parent, which reaps the tree
	Tasks []TaskOutcome `json:"tasks,omitempty"`
}

// TaskOutcome is one restored task: its pid in the image and now, from the
// root's namespace level inwards, and in the daemon's namespace.
type TaskOutcome struct {
	Image  []int32 `json:"image"`
	Now    []int32 `json:"now"`
	Host   int     `json:"host"`
	Zombie bool    `json:"zombie,omitempty"`
}

const (
	capSysAdmin          = 21
	capCheckpointRestore = 40
)

// mayRestore applies the rule for creating the image's processes. Restart
// does not yet give the tasks the image's credentials: they run with the
// daemon's. So only a caller who could create any process may restore:
// CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in the daemon's user namespace.
func mayRestore(ctx context.Context) error {
	c, ok := callerOf(ctx)
	if !ok {
		return fmt.Errorf("no caller: %w", syscall.EIO)
	}
	st, err := procfs.ReadStatus(c.Pid)
	if err != nil {
		return err
	}
	if st.CapEff&(1<<capSysAdmin|1<<capCheckpointRestore) == 0 {
		return fmt.Errorf("restoring needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE (the restored tasks would run with ckptfs's credentials): %w", syscall.EPERM)
	}
	return nil
}

func newRestoreFile(cfg *Config, name string) (*restoreFile, error) {
	fd, err := unix.MemfdCreate("ckptfs-restore-"+name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	return &restoreFile{cfg: cfg, name: name, spool: os.NewFile(uintptr(fd), name), mtime: time.Now()}, nil
}

var _ = (gofs.NodeGetattrer)((*restoreFile)(nil))

func (f *restoreFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	out.Mode = fuse.S_IFREG | 0o600
	out.Size = uint64(f.size)
	if f.done {
		out.Mode = fuse.S_IFREG | 0o400
		out.Size = uint64(len(f.outcome))
	}
	out.SetTimes(&f.mtime, &f.mtime, &f.mtime)
	return 0
}

var _ = (gofs.NodeOpener)((*restoreFile)(nil))

func (f *restoreFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EBUSY // an image is written once, at create
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

var _ = (gofs.NodeReader)((*restoreFile)(nil))

func (f *restoreFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.done {
		return nil, syscall.EBUSY
	}
	if off >= int64(len(f.outcome)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(f.outcome[off:min(int64(len(f.outcome)), off+int64(len(dest)))]), 0
}

var _ = (gofs.NodeWriter)((*restoreFile)(nil))

func (f *restoreFile) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done || f.spool == nil {
		return 0, syscall.EBADF
	}
	if _, err := f.spool.WriteAt(data, off); err != nil {
		return 0, errno(err)
	}
	f.size = max(f.size, off+int64(len(data)))
	return uint32(len(data)), 0
}

var _ = (gofs.NodeFlusher)((*restoreFile)(nil))

// Flush runs the restart when the writer closes the file, so that its error
// reaches close() and the writer (cp) fails with it. The kernel calls Flush
// for every close of a descriptor of the open file: only the first one with
// data restarts; the others return the same result.
func (f *restoreFile) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return f.errno
	}
	if f.spool == nil {
		return 0
	}
	out := Outcome{State: "running"}
	f.spool.Seek(0, 0)
	res, err := restart.Restore(f.spool)
	f.spool.Close()
	f.spool = nil
	if err != nil {
		f.cfg.Logger.Printf("restore/%s: %v", f.name, err)
		out = Outcome{State: "failed", Error: err.Error()}
		f.errno = errno(err)
		if f.errno == syscall.EIO || f.errno == 0 {
			f.errno = syscall.EINVAL
		}
	} else {
		out.Root, out.Seed = res.Root, res.Seed
		for _, t := range res.Tasks {
			out.Tasks = append(out.Tasks, TaskOutcome{t.Image, t.Now, t.Host, t.Zombie})
		}
	}
	f.outcome, _ = json.MarshalIndent(out, "", "  ")
	f.outcome = append(f.outcome, '\n')
	f.done = true
	f.mtime = time.Now()
	return f.errno
}
