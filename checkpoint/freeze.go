package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/cleanup"
	"github.com/ckptfs/ckptfs/internal/fault"
	"github.com/ckptfs/ckptfs/internal/kcmp"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/ptrace"
)

// Where a frozen task waits.
//
// Every task of a frozen tree is seized (PTRACE_SEIZE, which sends no
// signal and changes no job-control state) and parked in the stop of
// PTRACE_INTERRUPT, or in its group-stop if it was stopped already: stops
// that the daemon's death ends harmlessly (internal/inject's package doc).
// A task that instead reports a signal-delivery-stop (a signal was on its
// way when we interrupted it) gets that signal delivered at once and is
// interrupted again: it is never parked with a signal in hand that the
// daemon's death would deliver late, or a thaw would have to remember.
// Capture then drives the parked tasks only through guarded calls
// (inject.Guard), which leave each task as it was whatever instant the
// daemon dies; thaw detaches them.

// frozen is a subtree whose every task is stopped (or a zombie, which
// cannot change while its parent is stopped).
type frozen struct {
	tr     *ptrace.Tracer
	tasks  []taskRef        // the subtree, in tree order
	state  map[taskRef]byte // /proc state before the freeze
	seized map[int]bool     // tids seized and stopped
	since  time.Time        // when the first task was stopped
	undo   cleanup.Stack    // lets go of every seized task
}

// maxRounds bounds the walk/seize loop: a tree that keeps forking faster
// than we can stop it is refused rather than chased forever.
const maxRounds = 1000

// seizeOptions: syscall stops are told apart from SIGTRAP (and the code a
// syscall stop leaves behind on the tracer's death is no signal).
const seizeOptions = unix.PTRACE_O_TRACESYSGOOD

// freeze stops every task of the subtree rooted at root. Options.Allow
// vets each task before any is touched. On error, or when ctx is done
// first, nothing stays stopped.
func freeze(ctx context.Context, root int, opt *Options) (_ *frozen, err error) {
	f := &frozen{
		tr:     ptrace.NewTracer(),
		state:  make(map[taskRef]byte),
		seized: make(map[int]bool),
	}
	f.undo.AddFunc(f.tr.Close)
	defer func() {
		if err != nil {
			f.undo.Undo()
		}
	}()
	for round := 0; round < maxRounds; round++ {
		if err := ctx.Err(); err != nil {
			return nil, taskErr(root, "freeze", err)
		}
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
			fault.Point("checkpoint-frozen")
			return f, nil
		}
		if err := f.stop(ctx, root, fresh, opt); err != nil {
			return nil, err
		}
	}
	return nil, taskErr(root, "freeze", fmt.Errorf("tree still changing after %d rounds", maxRounds))
}

// stop vets, seizes and interrupts the fresh tasks, then waits for each to
// report its stop. Zombies are only recorded: they cannot be seized, and
// cannot change either.
func (f *frozen) stop(ctx context.Context, root int, fresh []taskRef, opt *Options) error {
	// Vet every task before touching any: a tree holding the reader or
	// ckptfs itself, a task another tracer holds, or one that cannot stop
	// (a vfork parent) is refused without stopping a single task of it.
	for _, t := range fresh {
		if err := opt.allow(t.tgid, t.tid); err != nil {
			return err
		}
		if err := notTraced(t); err != nil {
			return err
		}
		if err := notVforked(t); err != nil {
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
			if err := ptrace.Seize(t.tid, seizeOptions); err != nil {
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
		tid := t.tid
		f.seized[tid] = true
		f.undo.AddFunc(func() { f.detach(tid) })
		seized = append(seized, t)
		if f.since.IsZero() {
			f.since = time.Now()
		}
	}
	for _, t := range seized {
		stopped, err := f.waitStopped(ctx, t, opt)
		if err != nil {
			return err
		}
		if !stopped {
			// It died before stopping. Forget it; the next walk sees what
			// became of it (a zombie, or nothing).
			delete(f.seized, t.tid)
			delete(f.state, t)
		}
	}
	return nil
}

// waitStopped waits for a seized task to park in its interrupt stop (or
// group-stop). A signal that was being delivered when it was interrupted
// is delivered now (see "Where a frozen task waits"), and the task
// interrupted again. It reports false for a task that died meanwhile.
func (f *frozen) waitStopped(ctx context.Context, t taskRef, opt *Options) (bool, error) {
	for range 64 {
		var stop ptrace.Stop
		err := f.tr.Do(func() (err error) {
			stop, err = ptrace.WaitStop(ctx, t.tid, opt.stopTimeout())
			return err
		})
		switch {
		case errors.Is(err, unix.ETIMEDOUT):
			return false, taskErr(t.tid, fmt.Sprintf("freeze (state %c)", f.state[t]), ErrStuck)
		case err != nil:
			return false, taskErr(t.tid, "freeze", err)
		case stop.Exited:
			return false, nil
		case stop.Signal == 0:
			return true, nil
		}
		err = f.tr.Do(func() error {
			if err := ptrace.Interrupt(t.tid); err != nil {
				return err
			}
			return unix.PtraceCont(t.tid, stop.Signal)
		})
		if errors.Is(err, unix.ESRCH) {
			return false, nil
		}
		if err != nil {
			return false, taskErr(t.tid, fmt.Sprintf("freeze: deliver signal %d", stop.Signal), err)
		}
	}
	return false, taskErr(t.tid, "freeze", fmt.Errorf("signals keep arriving: %w", ErrStuck))
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

// notVforked refuses a process that shares its address space with its
// parent: a child made by vfork that has not yet called exec or _exit.
// Its parent sleeps in vfork, uninterruptibly, until it does: it would
// never stop for the freeze, and a restart could not share the memory
// again anyway. Refusing it here names vfork at once, where waiting for
// the parent to stop would time out without a reason.
func notVforked(t taskRef) error {
	if t.tid != t.tgid {
		return nil
	}
	st, err := procfs.ReadStat(t.tgid)
	if gone(err) || err == nil && (st.State == 'Z' || st.PPid <= 0) {
		return nil
	}
	if err != nil {
		return taskErr(t.tid, "read stat", err)
	}
	same, err := kcmp.Same(kcmp.VM, t.tgid, st.PPid)
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOSYS):
		return nil // a parent we may not inspect, gone, or no kcmp
	case err != nil:
		return taskErr(t.tid, "compare with its parent", err)
	case same:
		return taskErr(t.tid, "freeze", fmt.Errorf(
			"shares its address space with its parent %d: a vfork child that has not called exec or _exit yet (its parent waits in vfork): %w",
			st.PPid, ErrVfork))
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
	for tid := range f.seized {
		if !in[tid] {
			f.detach(tid)
		}
	}
}

// detach lets one task go, if it is still held.
func (f *frozen) detach(tid int) {
	if !f.seized[tid] {
		return
	}
	delete(f.seized, tid)
	f.tr.Do(func() error {
		if err := ptrace.Detach(tid, 0); errors.Is(err, unix.ESRCH) {
			// Exited while stopped: collect the tracer's notification so it
			// does not linger.
			var ws unix.WaitStatus
			unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil)
		}
		return nil
	})
}

// letGo lets go of the tasks of the processes keep says to (by tgid), and
// keeps the tracer, which copies of the tree's memory need (copy.go).
func (f *frozen) letGo(keep func(tgid int) bool) {
	for _, t := range f.tasks {
		if f.seized[t.tid] && keep(t.tgid) {
			f.detach(t.tid)
		}
	}
}

// thaw lets every task go and ends the tracer. A task the tracer could not
// detach (one left running by a call that never came back) is let go by the
// tracer thread's exit, the same way a daemon's death would.
func (f *frozen) thaw() {
	f.undo.Undo()
}

// frozenFor is how long the tree has been (partly) stopped.
func (f *frozen) frozenFor() time.Duration {
	if f.since.IsZero() {
		return 0
	}
	return time.Since(f.since)
}
