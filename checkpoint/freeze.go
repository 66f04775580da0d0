package checkpoint

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/ptrace"
)

// frozen is a subtree whose every task is stopped (or a zombie, which
// cannot change while its parent is stopped).
type frozen struct {
	tr    *ptrace.Tracer
	tasks []taskRef        // the subtree, in tree order
	state map[taskRef]byte // /proc state before the freeze
	held  map[int]int      // seized tid → signal to hand back on thaw
	since time.Time        // when the first task was stopped
}

// maxRounds bounds the walk/seize loop: a tree that keeps forking faster
// than we can stop it is refused rather than chased forever.
const maxRounds = 1000

// freeze stops every task of the subtree rooted at root. allow vets each task
// before it is touched. On error nothing stays stopped.
func freeze(root int, opt *Options) (_ *frozen, err error) {
	f := &frozen{
		tr:    ptrace.NewTracer(),
		state: make(map[taskRef]byte),
		held:  make(map[int]int),
	}
	defer func() {
		if err != nil {
			f.thaw()
		}
	}()
	for round := 0; round < maxRounds; round++ {
		tasks, err := walk(root)
		if err != nil {
			return nil, err
		}
		var fresh []taskRef
		for _, t := range tasks {
			if _, seen := f.state[t]; !seen {
				fresh = append(fresh, t)
			}
		}
		if len(fresh) == 0 {
			f.tasks = tasks
			f.release(tasks)
			return f, nil
		}
		if err := f.stop(root, fresh, opt); err != nil {
			return nil, err
		}
	}
	return nil, taskErr(root, "freeze", fmt.Errorf("tree still changing after %d rounds", maxRounds))
}

// stop vets, seizes and interrupts the fresh tasks, then waits for each to
// report its stop. Zombies are only recorded: they cannot be seized, and
// cannot change either.
func (f *frozen) stop(root int, fresh []taskRef, opt *Options) error {
	// Vet every task before touching any: a tree holding the reader or
	// ckptfs itself, or a task another tracer holds, is refused without
	// stopping a single task of it.
	for _, t := range fresh {
		if err := opt.allow(t.tgid, t.tid); err != nil {
			return err
		}
		if err := notTraced(t); err != nil {
			return err
		}
	}
	var seized []taskRef
	for _, t := range fresh {
		st, err := procfs.ReadTaskStat(t.tgid, t.tid)
		if err != nil {
			if gone(err) {
				if t.tid == root {
					return taskErr(root, "freeze", ErrVanished)
				}
				continue // exited meanwhile: the next walk decides
			}
			return taskErr(t.tid, "read stat", err)
		}
		f.state[t] = st.State
		if st.State == 'Z' || st.State == 'X' {
			continue
		}
		err = f.tr.Do(func() error {
			if err := ptrace.Seize(t.tid, 0); err != nil {
				return err
			}
			return ptrace.Interrupt(t.tid)
		})
		switch {
		case errors.Is(err, unix.ESRCH):
			delete(f.state, t)
			continue
		case errors.Is(err, unix.EPERM):
			return taskErr(t.tid, "freeze", tracedOrDenied(t))
		case err != nil:
			return taskErr(t.tid, "freeze", err)
		}
		f.held[t.tid] = 0
		seized = append(seized, t)
		if f.since.IsZero() {
			f.since = time.Now()
		}
	}
	for _, t := range seized {
		var stop ptrace.Stop
		err := f.tr.Do(func() (err error) {
			stop, err = ptrace.WaitStop(t.tid, opt.stopTimeout())
			return err
		})
		if errors.Is(err, unix.ETIMEDOUT) {
			return taskErr(t.tid, fmt.Sprintf("freeze (state %c)", f.state[t]), ErrStuck)
		}
		if err != nil {
			return taskErr(t.tid, "freeze", err)
		}
		if stop.Exited {
			// It died before stopping. Forget it; the next walk sees what
			// became of it (a zombie, or nothing).
			delete(f.held, t.tid)
			delete(f.state, t)
			continue
		}
		f.held[t.tid] = stop.Signal
	}
	return nil
}

// notTraced refuses a task that another tracer (a debugger, strace)
// holds: PTRACE_SEIZE would fail on it, and the tracer could change it
// behind our back. A zombie is never seized, so its tracer does not matter.
// A tracer in a pid namespace we cannot see shows as 0: the seize's EPERM
// then speaks for it.
func notTraced(t taskRef) error {
	st, err := procfs.ReadTaskStatus(t.tgid, t.tid)
	switch {
	case gone(err):
		return nil // exited: the next walk decides
	case err != nil:
		return taskErr(t.tid, "read status", err)
	case st.TracerPid != 0 && st.State != 'Z' && st.State != 'X':
		return taskErr(t.tid, "freeze", tracedBy(st.TracerPid))
	}
	return nil
}

func tracedBy(tracer int) error {
	return fmt.Errorf("traced by pid %d: %w", tracer, ErrTraced)
}

// tracedOrDenied explains an EPERM from PTRACE_SEIZE: a tracer came after
// the vetting, or ptrace is denied.
func tracedOrDenied(t taskRef) error {
	if st, err := procfs.ReadTaskStatus(t.tgid, t.tid); err == nil && st.TracerPid != 0 {
		return tracedBy(st.TracerPid)
	}
	return fmt.Errorf("%w: ptrace refused", ErrAccess)
}

// release lets go of seized tasks that are no longer in the subtree (their
// parent exited before it was stopped and they were reparented away).
func (f *frozen) release(keep []taskRef) {
	in := make(map[int]bool, len(keep))
	for _, t := range keep {
		in[t.tid] = true
	}
	for tid, sig := range f.held {
		if !in[tid] {
			f.detach(tid, sig)
		}
	}
}

func (f *frozen) detach(tid, sig int) {
	f.tr.Do(func() error {
		if err := ptrace.Detach(tid, sig); errors.Is(err, unix.ESRCH) {
			// Exited while stopped: collect the tracer's notification so it
			// does not linger.
			var ws unix.WaitStatus
			unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil)
		}
		return nil
	})
	delete(f.held, tid)
}

// thaw lets every task go, handing back any signal that arrived during the
// freeze, and ends the tracer.
func (f *frozen) thaw() {
	for tid, sig := range f.held {
		f.detach(tid, sig)
	}
	f.tr.Close()
}

// frozenFor is how long the tree has been (partly) stopped.
func (f *frozen) frozenFor() time.Duration {
	if f.since.IsZero() {
		return 0
	}
	return time.Since(f.since)
}
