package inject

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/sys"
)

// StepTimeout bounds how long a task may take to come back from one
// injected call: one that never does (a call blocked for good) fails the
// operation instead of hanging it.
var StepTimeout = 10 * time.Second

// sysgood is the stop signal of a syscall stop under PTRACE_O_TRACESYSGOOD.
const sysgood = int(unix.SIGTRAP) | 0x80

// wait waits for tid to change state. A blocking wait4 leaves the CPU to
// the tracee, which polling would not; so that it cannot block for ever,
// a watchdog acts on a task that has not come back within timeout: unstick
// makes it stop (or die), which ends the wait, and the wait then reports
// ETIMEDOUT.
func wait(tid int, timeout time.Duration, unstick func(tid int)) (unix.WaitStatus, error) {
	var stuck atomic.Bool
	watchdog := time.AfterFunc(timeout, func() {
		stuck.Store(true)
		unstick(tid)
	})
	defer watchdog.Stop()
	_, ws, err := sys.Wait4(tid, unix.WALL)
	switch {
	case err != nil:
		return ws, err
	case stuck.Load():
		return ws, fmt.Errorf("no stop within %v: %w", timeout, unix.ETIMEDOUT)
	}
	return ws, nil
}

// drive resumes the task with resume (PTRACE_SYSCALL or PTRACE_CONT)
// until arrived says it reached the stop it was resumed for. On the way, a
// death ends it; the event stop of a clone notes the child; other event
// stops are passed; a fault the injected code raised ends it; any other
// signal that stops the task is handed to signal, which says what to
// deliver when it is resumed (0 holds the signal back). unstick is the
// watchdog's action on a task that does not come back (see wait).
func (t *Task) drive(resume func(tid, sig int) error, unstick func(int), arrived func(unix.WaitStatus) bool,
	signal func(sig int) (deliver int, err error)) (unix.WaitStatus, error) {
	deliver := 0
	for {
		if err := resume(t.Tid, deliver); err != nil {
			return 0, os.NewSyscallError("ptrace", err)
		}
		deliver = 0
		ws, err := wait(t.Tid, StepTimeout, unstick)
		if err != nil {
			return ws, err
		}
		switch ev := sys.Event(ws); {
		case ws.Exited() || ws.Signaled():
			return ws, fmt.Errorf("task died (%v)", sys.Death(ws))
		case !ws.Stopped():
		case arrived(ws):
			return ws, nil
		case ev == unix.PTRACE_EVENT_CLONE || ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_VFORK:
			msg, err := unix.PtraceGetEventMsg(t.Tid)
			if err != nil {
				return ws, os.NewSyscallError("ptrace(GETEVENTMSG)", err)
			}
			t.Child = int(msg)
		case ev != 0:
			// Another event stop (a group-stop, an exec): carry on.
		case isFault(ws.StopSignal()):
			var regs unix.PtraceRegs
			unix.PtraceGetRegs(t.Tid, &regs)
			return ws, fmt.Errorf("%v at rip %#x", ws.StopSignal(), regs.Rip)
		default:
			if deliver, err = signal(int(ws.StopSignal())); err != nil {
				return ws, err
			}
		}
	}
}

// kill is the watchdog's action on a task whose death is harmless (a task
// of a restore under construction).
func kill(tid int) { unix.Kill(tid, unix.SIGKILL) }

// isFault reports signals the injected instruction itself raised: going
// on would only raise them again.
func isFault(sig unix.Signal) bool {
	return sig == unix.SIGSEGV || sig == unix.SIGBUS || sig == unix.SIGILL || sig == unix.SIGFPE
}
