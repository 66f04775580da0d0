package inject

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/ptrace"
	"github.com/ckptfs/ckptfs/internal/sys"
)

// A Copy is a child that a guarded task's process forked on the tracer's
// behalf (clone3 without CLONE_VM), kept stopped: the kernel shares every
// private page of the process with it copy-on-write, so the copy holds the
// process's memory as it was at the fork, for as long as it lives, while
// the process runs on. A page the process writes afterwards is duplicated
// then, once; the rest costs nothing.
//
// The copy must never run the program's code, whatever becomes of the
// tracer, and the process must not notice it:
//
//   - it is forked with exit signal 0: its end sends the process no
//     SIGCHLD, and wait(2) without __WALL or __WCLONE does not see it;
//   - it is traced from birth (PTRACE_O_TRACECLONE) and parked in its
//     first stop, a PTRACE_EVENT_STOP;
//   - clone3 starts it on a stack of our choosing, in the guard's area: at
//     a second signal frame, whose registers call exit(CopyExit). Like its
//     parent it returns from clone3 into the sigreturn gadget, but
//     rt_sigreturn then takes that frame. So if the tracer dies at any
//     instant, the copy exits at once, before a single instruction of the
//     program.
//
// A copy that ended is a zombie of its parent, which only the parent may
// reap (wait with __WALL): whoever ends a copy must make the process do
// that (or the process's exit takes it away). One let go by a dead tracer
// is recognised by its exit status (IsLostCopy). Its memory differs from
// the process's at the fork only in the guard's area, which held Saved.
type Copy struct {
	Tid     int    // its pid in the tracer's namespace
	Local   int    // its pid in the process's own namespace, for the process's wait
	Scratch uint64 // where the guard's area is
	Saved   []byte // what the area held before the guard wrote it
}

// CopyExit is the exit status of a copy let go: with exit signal 0, the
// mark by which a later tracer tells a copy left by a dead one from a
// program's own zombie (IsLostCopy).
const CopyExit = 0x43

// IsLostCopy reports whether a zombie with the given exit signal and wait
// status (/proc/<pid>/stat fields 38 and 52) is a copy that exited because
// its tracer died.
func IsLostCopy(exitSignal, waitStatus int32) bool {
	return exitSignal == 0 && waitStatus == CopyExit<<8
}

// cloneArgsSize is struct clone_args up to tls (CLONE_ARGS_SIZE_VER0).
const cloneArgsSize = 64

// Fork makes a task guarded with GuardFork fork a Copy of its process. The
// task must be traced with PTRACE_O_TRACESYSGOOD alone; its options are
// set back to that.
func (t *Task) Fork() (*Copy, error) {
	g := t.g
	if g == nil || g.copyFrame == 0 {
		return nil, fmt.Errorf("pid %d: fork of a task not guarded for it (GuardFork)", t.Tid)
	}
	// The copy's frame: its registers are the task's at the gadget's
	// syscall instruction with exit(CopyExit) loaded, every signal blocked.
	exit := t.Saved
	exit.Rip = g.sp.entry - uint64(len(syscallInsn))
	exit.Rax, exit.Rdi = unix.SYS_EXIT, CopyExit
	exit.Rsp = g.copyFrame + ucOff
	if err := WriteMem(t.Tid, g.copyFrame, sigFrame(g.copyFrame, &exit, allBlocked, g.xs)); err != nil {
		return nil, fmt.Errorf("pid %d: write the copy's frame at %#x: %w", t.Tid, g.copyFrame, err)
	}
	// struct clone_args: no flags (a fork), exit signal 0, and the stack
	// pointer at the frame (stack + stack_size, the stack growing down).
	var args [cloneArgsSize]byte
	binary.LittleEndian.PutUint64(args[40:], g.copyFrame) // stack
	binary.LittleEndian.PutUint64(args[48:], ucOff)       // stack_size
	if err := t.WriteData(args[:]); err != nil {
		return nil, err
	}
	if err := unix.PtraceSetOptions(t.Tid, unix.PTRACE_O_TRACESYSGOOD|unix.PTRACE_O_TRACECLONE); err != nil {
		return nil, fmt.Errorf("pid %d: %w", t.Tid, sys.Wrap("ptrace(SETOPTIONS)", err))
	}
	t.Child = 0
	local, err := t.Syscall(unix.SYS_CLONE3, t.Data(), cloneArgsSize)
	point("fork-forked")
	if oerr := unix.PtraceSetOptions(t.Tid, unix.PTRACE_O_TRACESYSGOOD); oerr != nil && err == nil {
		err = fmt.Errorf("pid %d: %w", t.Tid, sys.Wrap("ptrace(SETOPTIONS)", oerr))
	}
	if t.Child == 0 {
		if err == nil {
			err = fmt.Errorf("pid %d: clone3 returned %d without a clone event", t.Tid, local)
		}
		return nil, err
	}
	c := &Copy{Tid: t.Child, Local: int(local), Scratch: g.base, Saved: append([]byte(nil), g.saved...)}
	if err != nil {
		EndCopy(c)
		return nil, err
	}
	// Its first stop: a traced child starts with one.
	stop, err := ptrace.WaitStop(context.Background(), c.Tid, StepTimeout)
	switch {
	case err != nil:
		EndCopy(c)
		return nil, fmt.Errorf("pid %d: the copy %d: %w", t.Tid, c.Tid, err)
	case stop.Exited:
		return nil, fmt.Errorf("pid %d: the copy %d died at birth (%v)", t.Tid, c.Tid, sys.Death(stop.Status))
	case sys.Event(stop.Status) != unix.PTRACE_EVENT_STOP:
		EndCopy(c)
		return nil, fmt.Errorf("pid %d: the copy %d first stopped with status %#x", t.Tid, c.Tid, uint32(stop.Status))
	}
	point("fork-stopped")
	return c, nil
}

// EndCopy ends a copy the way a tracer's death would: it lets it run into
// its frame's exit(CopyExit), then collects its end as its tracer. It is
// then its parent's zombie (see Copy), marked as a lost copy should nobody
// reap it. A copy that does not end so within StepTimeout is killed. It
// must run on the tracer's thread.
func EndCopy(c *Copy) {
	if err := unix.PtraceCont(c.Tid, 0); err != nil {
		unix.Kill(c.Tid, unix.SIGKILL)
	}
	watchdog := time.AfterFunc(StepTimeout, func() { unix.Kill(c.Tid, unix.SIGKILL) })
	defer watchdog.Stop()
	for {
		pid, ws, err := sys.Wait4(c.Tid, unix.WALL)
		if err != nil || pid == c.Tid && (ws.Exited() || ws.Signaled()) {
			return
		}
		// A stop on the way (none is expected): on with it.
		unix.PtraceCont(c.Tid, 0)
	}
}
