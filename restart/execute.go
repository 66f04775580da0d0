package restart

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/fault"
	"github.com/ckptfs/ckptfs/internal/inject"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/restart/internal/plan"
)

// cloneExtra are the flags a thread needs beyond CLONE_THREAD: the sharing
// that pthread_create asks for (its TLS, tid words and robust list come
// back with the thread's registers and state).
const cloneExtra = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_SYSVSEM

// executor runs a plan's steps, each by injecting the step's system call
// into its actor. It runs on the tracer's thread.
type executor struct {
	ctx   context.Context
	plan  *plan.Plan
	procs []*proc // by plan.ProcID; procs[plan.Restorer] is the seed
}

func (e *executor) run() error {
	for i, st := range e.plan.Steps {
		if e.ctx.Err() != nil {
			return fmt.Errorf("step %d (%s): cancelled: %w", i+1, e.plan.StepString(i), context.Cause(e.ctx))
		}
		if err := e.step(st); err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, e.plan.StepString(i), err)
		}
		fault.Point("restart-forest")
	}
	return nil
}

func (e *executor) step(st plan.Step) error {
	actor := e.procs[st.ActorID()]
	if actor == nil {
		return fmt.Errorf("actor does not exist yet")
	}
	switch s := st.(type) {
	case plan.Clone:
		return e.clone(actor, s)
	case plan.Setsid:
		_, err := actor.syscall(unix.SYS_SETSID)
		return err
	case plan.Setpgid:
		pgid := uint64(s.PGid)
		if s.Group == image.TagRoot {
			// The restorer's own group, which the planner cannot number.
			g, err := e.procs[plan.Restorer].syscall(unix.SYS_GETPGID, 0)
			if err != nil {
				return err
			}
			pgid = g
		}
		_, err := actor.syscall(unix.SYS_SETPGID, uint64(s.Pid), pgid)
		return err
	case plan.Subreaper:
		on := uint64(0)
		if s.On {
			on = 1
		}
		_, err := actor.syscall(unix.SYS_PRCTL, unix.PR_SET_CHILD_SUBREAPER, on)
		return err
	case plan.Exit:
		return actor.exit(s.Status)
	case plan.Wait:
		_, err := actor.syscall(unix.SYS_WAITID, unix.P_PID, uint64(s.Pid), actor.scratch(), unix.WEXITED, 0)
		return err
	}
	return fmt.Errorf("unknown step %T", st)
}

// clone creates a process of the plan, entering the child's namespace first
// when it lies below the actor's own.
func (e *executor) clone(actor *proc, s plan.Clone) error {
	flags := uint64(s.Flags)
	// clone3 wants no exit signal with CLONE_PARENT (the child takes its
	// creator's) or CLONE_THREAD.
	exitSignal := int(unix.SIGCHLD)
	if s.Flags&(plan.CloneThread|plan.CloneParent) != 0 {
		exitSignal = 0
	}
	if s.Flags&plan.CloneThread != 0 {
		flags |= cloneExtra
	}
	own := e.plan.Procs[s.Actor].NS
	enter := s.Flags&plan.CloneNewPID == 0 && s.NS != own && s.NS != 0
	if enter {
		if err := e.setns(actor, s.NS); err != nil {
			return err
		}
	}
	child, err := actor.clone(flags, exitSignal, s.SetTid)
	if enter {
		// Back to its own namespace for its own future children.
		if rerr := e.setnsTid(actor, actor.tid); err == nil {
			err = rerr
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("pid %v (innermost first) is taken: %w", s.SetTid, err)
	}
	if err != nil {
		return fmt.Errorf("create pid %v: %w", s.SetTid, err)
	}
	e.procs[s.Child] = child
	return nil
}

// setns points the actor's pid_for_children at namespace ns, through a
// process of the plan that lives in it.
func (e *executor) setns(actor *proc, ns image.Tag) error {
	for id, p := range e.plan.Procs {
		if p.NS == ns && e.procs[id] != nil {
			return e.setnsTid(actor, e.procs[id].tid)
		}
	}
	return fmt.Errorf("no process lives in namespace %d yet", ns)
}

func (e *executor) setnsTid(actor *proc, tid int) error {
	path := procfs.NSPath(tid, "pid")
	addr := actor.scratch()
	if err := inject.WriteMem(actor.tid, addr, append([]byte(path), 0)); err != nil {
		return err
	}
	atFDCWD := int64(unix.AT_FDCWD)
	fd, err := actor.syscall(unix.SYS_OPENAT, uint64(atFDCWD), addr, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	_, err = actor.syscall(unix.SYS_SETNS, fd, unix.CLONE_NEWPID)
	actor.syscall(unix.SYS_CLOSE, fd)
	if err != nil {
		return fmt.Errorf("setns %s: %w", path, err)
	}
	return nil
}
