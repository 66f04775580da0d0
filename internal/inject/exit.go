package inject

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/sys"
)

// Exit makes an unguarded task exit as a process that called
// exit_group(code) or, with sig != 0, that was killed by sig, and waits for
// its death. The tracer's wait consumes only the ptrace report: the task
// stays a zombie for its real parent, which sees the same wait status the
// original had.
func (t *Task) Exit(code, sig int) error {
	if t.g != nil {
		return fmt.Errorf("pid %d: a guarded task is never made to exit", t.Tid)
	}
	if sig != 0 {
		// Queue the signal to itself; it is delivered when the task runs.
		pid, err := t.Syscall(unix.SYS_GETPID)
		if err != nil {
			return err
		}
		if _, err := t.Syscall(unix.SYS_KILL, pid, uint64(sig)); err != nil {
			return err
		}
		if err := t.Restore(); err != nil {
			return err
		}
	} else {
		regs := t.Saved
		regs.Rip, regs.Orig_rax = t.Site, ^uint64(0)
		regs.Rax, regs.Rdi = unix.SYS_EXIT_GROUP, uint64(code)
		if err := unix.PtraceSetRegs(t.Tid, &regs); err != nil {
			return os.NewSyscallError("ptrace(SETREGS)", err)
		}
	}
	// The signal may already have stopped the task during the kill call;
	// it was held back then, and is handed over now.
	deliver := t.Pending
	t.Pending = 0
	deadline := time.Now().Add(StepTimeout)
	for {
		if err := unix.PtraceCont(t.Tid, deliver); err != nil {
			return os.NewSyscallError("ptrace(CONT)", err)
		}
		// Only a death reported by wait4 ends this: an interrupted wait
		// says nothing (its status of 0 would read as "exited 0").
		ws, err := wait(t.Tid, time.Until(deadline), kill)
		if err != nil {
			return fmt.Errorf("pid %d: waiting for its exit: %w", t.Tid, err)
		}
		switch {
		case ws.Exited() || ws.Signaled():
			return nil
		case ws.Stopped() && sys.Event(ws) == 0 && ws.StopSignal() != unix.SIGTRAP &&
			int(ws.StopSignal()) != sysgood:
			deliver = int(ws.StopSignal()) // let the signal do its work
		default:
			deliver = 0
		}
	}
}
