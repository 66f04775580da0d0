package fs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/restart"
)

// restoreFile is restore/<name>: the image written to it streams straight
// into a restart as it arrives (the format is read front to back); when
// the writer closes the file the restart finishes, and from then on reading
// the file tells the outcome as JSON.
type restoreFile struct {
	gofs.Inode
	cfg  *Config
	name string

	mu      sync.Mutex
	pipe    *io.PipeWriter // feeds the restart while the image arrives
	result  chan restoreResult
	size    int64 // bytes written so far: the next write's offset
	done    bool
	errno   syscall.Errno
	outcome []byte // JSON
	mtime   time.Time
}

type restoreResult struct {
	res *restart.Result
	err error
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

// mayRestore applies DESIGN.md's rule for who may create the image's
// processes: a caller with CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE (in the
// daemon's user namespace) may restore any image; any other caller only
// images whose every task has the caller's uids and gids, groups it is in,
// and no capability it lacks. The second case is checked per task as the
// image arrives, before that task runs (the returned AllowCreds), and the
// files the image names are opened with the caller's rights (As); empty
// options mean anything goes.
func mayRestore(ctx context.Context) (restart.Options, error) {
	c, ok := callerOf(ctx)
	if !ok {
		return restart.Options{}, fmt.Errorf("no caller: %w", syscall.EIO)
	}
	st, err := procfs.ReadStatus(c.Pid)
	if err != nil {
		return restart.Options{}, err
	}
	if st.CapEff&(1<<capSysAdmin|1<<capCheckpointRestore) != 0 {
		return restart.Options{}, nil
	}
	groups := map[uint32]bool{c.Gid: true}
	as := &restart.Identity{Uid: c.Uid, Gid: c.Gid, CapEff: st.CapEff}
	for _, g := range st.Groups {
		groups[uint32(g)] = true
		as.Groups = append(as.Groups, uint32(g))
	}
	allow := func(cr *image.Creds) error {
		for i := range cr.Uid {
			if cr.Uid[i] != c.Uid || !groups[cr.Gid[i]] {
				return fmt.Errorf("a task of the image runs as uid %d gid %d, and the restorer (uid %d) lacks CAP_SYS_ADMIN and CAP_CHECKPOINT_RESTORE: %w",
					cr.Uid[i], cr.Gid[i], c.Uid, syscall.EPERM)
			}
		}
		for _, g := range cr.Groups {
			if !groups[g] {
				return fmt.Errorf("a task of the image is in group %d, which the restorer is not: %w", g, syscall.EPERM)
			}
		}
		if extra := (cr.CapPrm | cr.CapEff | cr.CapInh | cr.CapAmb) &^ st.CapPrm; extra != 0 {
			return fmt.Errorf("a task of the image has capabilities %#x the restorer lacks: %w", extra, syscall.EPERM)
		}
		return nil
	}
	return restart.Options{AllowCreds: allow, As: as}, nil
}

// newRestoreFile starts a restart that reads what is written to the file.
func newRestoreFile(cfg *Config, name string, opt restart.Options) *restoreFile {
	pr, pw := io.Pipe()
	f := &restoreFile{cfg: cfg, name: name, pipe: pw, result: make(chan restoreResult, 1), mtime: time.Now()}
	go func() {
		res, err := restart.Restore(context.Background(), pr, opt)
		if err == nil {
			// A valid image ends at its tail: more bytes are an error.
			if n, _ := pr.Read(make([]byte, 1)); n > 0 {
				err = fmt.Errorf("restart: bytes after the image's tail")
			}
		}
		// Writes after a failure fail at once, with its reason.
		pr.CloseWithError(err)
		f.result <- restoreResult{res, err}
	}()
	return f
}

var _ = (gofs.NodeGetattrer)((*restoreFile)(nil))

func (f *restoreFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	out.Mode = fuse.S_IFREG | 0o600
	out.Size = uint64(f.size)
	// Writers such as cp size their buffers by st_blksize: large writes
	// mean fewer FUSE round trips for a large image.
	out.Blksize = 1 << 20
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
	if f.done || f.pipe == nil {
		return 0, syscall.EBADF
	}
	if off != f.size {
		// The restart consumes the image as a stream.
		f.cfg.Logger.Printf("restore/%s: write at %d, expected %d: images must be written in order", f.name, off, f.size)
		return 0, syscall.ESPIPE
	}
	n, err := f.pipe.Write(data)
	f.size += int64(n)
	if err != nil {
		f.cfg.Logger.Printf("restore/%s: %v", f.name, err)
		return uint32(n), errno(err)
	}
	return uint32(n), 0
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
	f.pipe.Close() // the end of the image
	r := <-f.result
	f.pipe = nil
	out := Outcome{State: "running"}
	if r.err != nil {
		f.cfg.Logger.Printf("restore/%s: %v", f.name, r.err)
		out = Outcome{State: "failed", Error: r.err.Error()}
		f.errno = errno(r.err)
		if f.errno == syscall.EIO || f.errno == 0 {
			f.errno = syscall.EINVAL
		}
	} else {
		out.Root, out.Seed = r.res.Root, r.res.Seed
		for _, t := range r.res.Tasks {
			out.Tasks = append(out.Tasks, TaskOutcome{t.Image, t.Now, t.Host, t.Zombie})
		}
	}
	f.outcome, _ = json.MarshalIndent(out, "", "  ")
	f.outcome = append(f.outcome, '\n')
	f.done = true
	f.mtime = time.Now()
	return f.errno
}
