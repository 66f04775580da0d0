package fs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/restart"
)

// restoreRun is one restore under a name of restore/: the image written
// to the file streams straight into a restart as it arrives (the format
// is read front to back); when the writer closes the file the restart
// finishes, and the run's outcome is final. The writer's side
// (restore_writer.go) is the handle that started the run: a writer that
// goes away before the restart finished cancels it, and the restart undoes
// everything it made. A name holds one run at a time (restore_file.go).
type restoreRun struct {
	cfg      *Config
	name     string
	uid, gid uint32    // who wrote the image: the file's owner
	started  time.Time // when the image began to arrive
	terminal string    // the terminal given to the tree (shell-job/), if any

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
	outcome   []byte    // JSON, once done
	mtime     time.Time // the last write, then the end
}

// restoreFunc runs a restart from an image read from r: restart.Restore,
// or a test's fake.
type restoreFunc func(ctx context.Context, r io.Reader, opt restart.Options) (*restart.Result, error)

// Outcome is what reading restore/<name> returns, as indented JSON: the
// state of the restore under that name. Its fields are a contract; add,
// never rename.
type Outcome struct {
	// State is "restoring" while the image arrives and the restart runs
	// (a new image under the name is refused with EBUSY meanwhile),
	// "running" once the restored tree runs, "failed" if the restore
	// failed or was cancelled (then it left nothing running).
	State string `json:"state"`
	// Error is the first error: the restart's, which names the step it
	// failed at, or why the restore was cancelled.
	Error string `json:"error,omitempty"`
	// Cancelled: the writer went away (was killed or interrupted, or
	// released the file) before the restart finished, which undid it.
	Cancelled bool          `json:"cancelled,omitempty"`
	Root      int           `json:"root,omitempty"` // the new root's pid in the daemon's namespace
	Seed      int           `json:"seed,omitempty"` // its parent, which reaps the tree
	Tasks     []TaskOutcome `json:"tasks,omitempty"`
	// Uid and Gid are who wrote the image (the FUSE caller at create, or
	// at the open that wrote a new image over an ended one): the file's
	// owner, who alone (and root) may read it, write over it, remove it.
	Uid uint32 `json:"uid"`
	Gid uint32 `json:"gid"`
	// Terminal is the writer's terminal, which a restore written into
	// shell-job/ gave the descriptors that led to a terminal.
	Terminal string `json:"terminal,omitempty"`
	// Bytes is how much of the image the restore took (so far, while
	// restoring; a restore that failed stops taking more).
	Bytes int64 `json:"bytes"`
	// Started is when the image began to arrive, Ended when the restart
	// returned (absent while restoring).
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
}

// The states of a restore (Outcome.State).
const (
	restoreRestoring = "restoring"
	restoreRunning   = "running"
	restoreFailed    = "failed"
)

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

// newRestoreRun starts a restart (run) that reads what is written under
// name by uid/gid. It closes opt.Terminal once the restart returned.
func newRestoreRun(cfg *Config, name string, uid, gid uint32, opt restart.Options, run restoreFunc) *restoreRun {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	now := time.Now()
	r := &restoreRun{
		cfg: cfg, name: name, uid: uid, gid: gid, started: now, pipe: pw, stop: cancel,
		turn: make(chan struct{}, 1), ended: make(chan struct{}), mtime: now,
	}
	if opt.Terminal != nil {
		r.terminal = opt.Terminal.Name()
	}
	go func() {
		res, err := run(ctx, pr, opt)
		if opt.Terminal != nil {
			opt.Terminal.Close() // the tasks have their own by now
		}
		if err == nil {
			// A valid image ends at its tail: more bytes are an error.
			if n, _ := pr.Read(make([]byte, 1)); n > 0 {
				err = fmt.Errorf("restart: bytes after the image's tail")
			}
		}
		// Writes after a failure fail at once, with its reason.
		pr.CloseWithError(err)
		r.finish(res, err)
	}()
	return r
}

// finish records the outcome of the restart.
func (r *restoreRun) finish(res *restart.Result, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.stop() // frees the context
	r.done = true
	r.mtime = time.Now()
	out := r.outcomeLocked()
	out.State = restoreRunning
	if err != nil {
		if r.first == nil {
			r.first = err
		}
		if err != r.first {
			r.cfg.Logger.Printf("%s: %v (the restart then: %v)", r.name, r.first, err)
		} else {
			r.cfg.Logger.Printf("%s: %v", r.name, err)
		}
		out.State, out.Error, out.Cancelled = restoreFailed, r.first.Error(), r.cancelled
		r.errno = errno(r.first)
		if r.errno == syscall.EIO || r.errno == 0 {
			r.errno = syscall.EINVAL
		}
	} else {
		if r.cancelled {
			// The writer went away once the restart was through.
			r.cfg.Logger.Printf("%s: %v after the restart finished; the tree runs", r.name, r.first)
		}
		out.Root, out.Seed = res.Root, res.Seed
		for _, t := range res.Tasks {
			out.Tasks = append(out.Tasks, TaskOutcome{t.Image, t.Now, t.Host, t.Zombie})
		}
	}
	r.outcome = marshalOutcome(out)
	close(r.ended)
}

// outcomeLocked is the outcome's part that every state has. Called with
// mu held.
func (r *restoreRun) outcomeLocked() Outcome {
	out := Outcome{State: restoreRestoring, Uid: r.uid, Gid: r.gid, Terminal: r.terminal, Bytes: r.size, Started: r.started}
	if r.done {
		out.Ended = r.mtime
	}
	return out
}

func marshalOutcome(out Outcome) []byte {
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		panic("fs: restore outcome: " + err.Error()) // nothing in it can fail
	}
	return append(data, '\n')
}

// status is what reading the file returns now: the outcome once the
// restart returned, else that it is restoring.
func (r *restoreRun) status() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return r.outcome
	}
	return marshalOutcome(r.outcomeLocked())
}

// over reports whether the restart returned, and when.
func (r *restoreRun) over() (bool, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done, r.mtime
}

// undoing reports whether the run was cancelled and its restart is still
// being undone: its outcome is known to be near, not yet what it is.
func (r *restoreRun) undoing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cancelled && !r.done
}

// describe says what a run is doing, for a refusal's log line.
func (r *restoreRun) describe() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancelled {
		return fmt.Sprintf("started %s by uid %d, cancelled (%v) and still being undone",
			r.started.Format(time.RFC3339), r.uid, r.first)
	}
	return fmt.Sprintf("started %s by uid %d, %d bytes of its image written so far",
		r.started.Format(time.RFC3339), r.uid, r.size)
}
