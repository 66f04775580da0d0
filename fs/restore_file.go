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
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/restart"
)

// restoreFile is restore/<name>: the image written to it streams straight
// into a restart as it arrives (the format is read front to back); when
// the writer closes the file the restart finishes, and from then on reading
// the file tells the outcome as JSON. The writer's side (restore_writer.go)
// is its handle: a writer that goes away before the restart finished
// cancels it, and the restart undoes everything it made.
type restoreFile struct {
	gofs.Inode
	cfg  *Config
	name string

	pipe  *io.PipeWriter     // feeds the restart while the image arrives
	stop  context.CancelFunc // cancels the restart's context
	turn  chan struct{}      // one write (or the end of the image) at a time
	ended chan struct{}      // closed once the restart returned

	mu        sync.Mutex
	size      int64 // bytes written so far: the next write's offset
	closed    bool  // the writer ended the image (Flush)
	first     error // the first error: the restart's, or why it was cancelled
	cancelled bool  // first is the writer's going away
	done      bool  // the restart returned: what follows is final
	errno     syscall.Errno
	outcome   []byte // JSON
	mtime     time.Time
}

// restoreFunc runs a restart from an image read from r: restart.Restore,
// or a test's fake.
type restoreFunc func(ctx context.Context, r io.Reader, opt restart.Options) (*restart.Result, error)

// Outcome is what reading restore/<name> returns once the restart ran.
type Outcome struct {
	State string `json:"state"` // "running" or "failed"
	// Error is the first error: the restart's, which names the step it
	// failed at, or why the restore was cancelled.
	Error string `json:"error,omitempty"`
	// Cancelled: the writer went away (was killed or interrupted, or
	// released the file) before the restart finished, which undid it.
	Cancelled bool          `json:"cancelled,omitempty"`
	Root      int           `json:"root,omitempty"` // the new root's pid in the daemon's namespace
	Seed      int           `json:"seed,omitempty"` // its parent, which reaps the tree
	Tasks     []TaskOutcome `json:"tasks,omitempty"`
}

// TaskOutcome is one restored task: its pid in the image and now, from the
// root's namespace level inwards, and in the daemon's namespace.
type TaskOutcome struct {
	Image  []int32 `json:"image"`
	Now    []int32 `json:"now"`
	Host   int     `json:"host"`
	Zombie bool    `json:"zombie,omitempty"`
}

// mayRestore applies the rule of docs/DESIGN.md §1 for who may create the image's
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
	if st.CapEff&(1<<unix.CAP_SYS_ADMIN|1<<unix.CAP_CHECKPOINT_RESTORE) != 0 {
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

// newRestoreFile starts a restart (run) that reads what is written to the
// file.
func newRestoreFile(cfg *Config, name string, opt restart.Options, run restoreFunc) *restoreFile {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	f := &restoreFile{
		cfg: cfg, name: name, pipe: pw, stop: cancel,
		turn: make(chan struct{}, 1), ended: make(chan struct{}), mtime: time.Now(),
	}
	go func() {
		res, err := run(ctx, pr, opt)
		if err == nil {
			// A valid image ends at its tail: more bytes are an error.
			if n, _ := pr.Read(make([]byte, 1)); n > 0 {
				err = fmt.Errorf("restart: bytes after the image's tail")
			}
		}
		// Writes after a failure fail at once, with its reason.
		pr.CloseWithError(err)
		f.finish(res, err)
	}()
	return f
}

// finish records the outcome of the restart.
func (f *restoreFile) finish(res *restart.Result, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.stop() // frees the context
	out := Outcome{State: "running"}
	if err != nil {
		if f.first == nil {
			f.first = err
		}
		if err != f.first {
			f.cfg.Logger.Printf("restore/%s: %v (the restart then: %v)", f.name, f.first, err)
		} else {
			f.cfg.Logger.Printf("restore/%s: %v", f.name, err)
		}
		out = Outcome{State: "failed", Error: f.first.Error(), Cancelled: f.cancelled}
		f.errno = errno(f.first)
		if f.errno == syscall.EIO || f.errno == 0 {
			f.errno = syscall.EINVAL
		}
	} else {
		if f.cancelled {
			// The writer went away once the restart was through.
			f.cfg.Logger.Printf("restore/%s: %v after the restart finished; the tree runs", f.name, f.first)
		}
		out.Root, out.Seed = res.Root, res.Seed
		for _, t := range res.Tasks {
			out.Tasks = append(out.Tasks, TaskOutcome{t.Image, t.Now, t.Host, t.Zombie})
		}
	}
	f.outcome, _ = json.MarshalIndent(out, "", "  ")
	f.outcome = append(f.outcome, '\n')
	f.done = true
	f.mtime = time.Now()
	close(f.ended)
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

// Open opens the outcome for reading. Such a handle has no Flush of its
// own: closing it never reports the restart's error, which is the
// writer's alone.
func (f *restoreFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EBUSY // an image is written once, at create
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

var _ = (gofs.NodeReader)((*restoreFile)(nil))

// Read returns the outcome, whatever it is, once the restart returned.
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
