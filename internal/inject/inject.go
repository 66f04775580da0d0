// Package inject makes a stopped tracee run system calls on the tracer's
// behalf: the one mechanism behind what no /proc file shows at checkpoint
// and behind every step of restart (DESIGN.md §3, §5).
//
// The tracee's registers are saved, pointed at a `syscall` instruction
// (found in its vDSO, or one we mapped), loaded with the call's number and
// arguments and single-stepped over that instruction; the result is read
// from rax and the saved registers are put back. orig_rax is set to -1 so
// that the kernel never treats the injected call as one to restart, and
// the task's own interrupted call is restarted exactly as the kernel would
// have when its saved registers return.
//
// Every function here must run on the thread that traces the task
// (ptrace.Tracer.Do).
package inject

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// StepTimeout bounds one injected call: a task that never comes back (a
// call blocked for good) fails the operation instead of hanging it.
var StepTimeout = 10 * time.Second

// syscallInsn is x86-64's `syscall`.
var syscallInsn = []byte{0x0f, 0x05}

// Task is a stopped tracee that runs injected system calls.
type Task struct {
	Tid   int
	Site  uint64          // address of a syscall instruction in the task
	Saved unix.PtraceRegs // registers at the stop, restored by Restore
	// Pending is a signal that arrived while we drove the task; it must be
	// delivered when the task is let go.
	Pending int
	// Child is the tid (in the tracer's namespace) of the task the last
	// injected fork or clone created, from its ptrace event.
	Child int
}

// New prepares tid, which must be in a ptrace stop, for injection.
func New(tid int) (*Task, error) {
	t := &Task{Tid: tid}
	if err := unix.PtraceGetRegs(tid, &t.Saved); err != nil {
		return nil, os.NewSyscallError("ptrace(GETREGS)", err)
	}
	site, err := FindSite(tid)
	if err != nil {
		return nil, err
	}
	t.Site = site
	return t, nil
}

// FindSite returns the address of a syscall instruction in the task's vDSO,
// which every x86-64 process maps and which holds such an instruction for
// its fallback paths.
func FindSite(tid int) (uint64, error) {
	maps, err := procfs.ReadMaps(tid)
	if err != nil {
		return 0, err
	}
	for _, m := range maps {
		if m.Path != "[vdso]" {
			continue
		}
		buf := make([]byte, m.End-m.Start)
		if err := ReadMem(tid, m.Start, buf); err != nil {
			return 0, err
		}
		if i := bytes.Index(buf, syscallInsn); i >= 0 {
			return m.Start + uint64(i), nil
		}
		return 0, fmt.Errorf("pid %d: no syscall instruction in the vDSO", tid)
	}
	return 0, fmt.Errorf("pid %d: no vDSO mapped", tid)
}

// Syscall runs system call nr with args in the task and returns its result
// (the raw rax: a negative errno is turned into an error).
func (t *Task) Syscall(nr uintptr, args ...uint64) (uint64, error) {
	if len(args) > 6 {
		return 0, fmt.Errorf("syscall %d: %d arguments, at most 6", nr, len(args))
	}
	var a [6]uint64
	copy(a[:], args)
	regs := t.Saved
	regs.Rip = t.Site
	regs.Rax = uint64(nr)
	regs.Orig_rax = ^uint64(0)
	regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	if err := unix.PtraceSetRegs(t.Tid, &regs); err != nil {
		return 0, os.NewSyscallError("ptrace(SETREGS)", err)
	}
	if err := t.step(); err != nil {
		return 0, fmt.Errorf("pid %d: syscall %d: %w", t.Tid, nr, err)
	}
	if err := unix.PtraceGetRegs(t.Tid, &regs); err != nil {
		return 0, os.NewSyscallError("ptrace(GETREGS)", err)
	}
	if regs.Rip != t.Site+uint64(len(syscallInsn)) {
		return 0, fmt.Errorf("pid %d: syscall %d: stopped at %#x, not after the instruction at %#x",
			t.Tid, nr, regs.Rip, t.Site)
	}
	if r := int64(regs.Rax); r < 0 && r > -4096 {
		return 0, fmt.Errorf("pid %d: syscall %d: %w", t.Tid, nr, unix.Errno(-r))
	}
	return regs.Rax, nil
}

// step single-steps over the syscall instruction.
func (t *Task) step() error {
	return t.resume(unix.PtraceSingleStep)
}

// resume lets the task go on with how (single step, or continue) until it
// traps: the single step's trap, or the int3 that ends a batch. Other stops
// on the way are passed over: an event such as a clone (its child noted),
// a signal arriving (held back until release, in Pending); a fault the
// code itself raised ends it.
func (t *Task) resume(how func(tid int) error) error {
	if err := how(t.Tid); err != nil {
		return os.NewSyscallError("ptrace", err)
	}
	for {
		ws, err := waitTimeout(t.Tid, StepTimeout)
		if err != nil {
			return err
		}
		event := int(ws) >> 16 & 0xff
		switch {
		case ws.Exited() || ws.Signaled():
			return fmt.Errorf("task died (%v)", describe(ws))
		case !ws.Stopped():
			continue
		case event == unix.PTRACE_EVENT_CLONE || event == unix.PTRACE_EVENT_FORK ||
			event == unix.PTRACE_EVENT_VFORK:
			msg, err := unix.PtraceGetEventMsg(t.Tid)
			if err != nil {
				return os.NewSyscallError("ptrace(GETEVENTMSG)", err)
			}
			t.Child = int(msg)
		case event != 0:
			// Another event stop (exec, exit, group-stop): carry on.
		case ws.StopSignal() == unix.SIGTRAP:
			return nil
		case isFault(ws.StopSignal()):
			var regs unix.PtraceRegs
			unix.PtraceGetRegs(t.Tid, &regs)
			return fmt.Errorf("%v at rip %#x", ws.StopSignal(), regs.Rip)
		default:
			t.Pending = int(ws.StopSignal())
		}
		if err := how(t.Tid); err != nil {
			return os.NewSyscallError("ptrace", err)
		}
	}
}

// Restore puts the task's saved registers back.
func (t *Task) Restore() error {
	return wrap("ptrace(SETREGS)", unix.PtraceSetRegs(t.Tid, &t.Saved))
}

// ReadMem reads the task's memory at addr through /proc/<pid>/mem.
func ReadMem(tid int, addr uint64, buf []byte) error {
	f, err := os.Open("/proc/" + strconv.Itoa(tid) + "/mem")
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(buf, int64(addr))
	return err
}

// WriteMem writes buf into the task's memory at addr, whatever the page
// protection (the kernel writes through /proc/<pid>/mem with FOLL_FORCE).
func WriteMem(tid int, addr uint64, buf []byte) error {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(tid)+"/mem", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(buf, int64(addr))
	return err
}

// isFault reports signals the injected instruction itself raised: stepping
// again would only raise them again.
func isFault(sig unix.Signal) bool {
	return sig == unix.SIGSEGV || sig == unix.SIGBUS || sig == unix.SIGILL || sig == unix.SIGFPE
}

// waitTimeout waits for tid to change state. A task that has not come back
// within timeout is stuck in a call that will never return: it is killed,
// which ends the wait, and the operation fails. (Checkpoint injects only
// calls that cannot block, into tasks it vetted; restart kills what it
// built on any failure anyway.) A blocking wait leaves the CPU to the
// tracee, which polling would not.
func waitTimeout(tid int, timeout time.Duration) (unix.WaitStatus, error) {
	var stuck atomic.Bool
	watchdog := time.AfterFunc(timeout, func() {
		stuck.Store(true)
		unix.Kill(tid, unix.SIGKILL)
	})
	defer watchdog.Stop()
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return ws, os.NewSyscallError("wait4", err)
		case stuck.Load():
			return ws, fmt.Errorf("no stop within %v, killed: %w", timeout, unix.ETIMEDOUT)
		}
		return ws, nil
	}
}

func describe(ws unix.WaitStatus) string {
	if ws.Exited() {
		return "exit status " + strconv.Itoa(ws.ExitStatus())
	}
	return "killed by " + ws.Signal().String()
}

func wrap(op string, err error) error {
	if err != nil {
		return os.NewSyscallError(op, err)
	}
	return nil
}

// Exit makes the task exit as a process that called exit_group(code) or,
// with sig != 0, that was killed by sig, and waits for its death. The
// tracer's wait consumes only the ptrace report: the task stays a zombie
// for its real parent, which sees the same wait status the original had.
func (t *Task) Exit(code, sig int) error {
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
	for {
		if err := unix.PtraceCont(t.Tid, deliver); err != nil {
			return os.NewSyscallError("ptrace(CONT)", err)
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(t.Tid, &ws, unix.WALL, nil); err != nil && err != unix.EINTR {
			return os.NewSyscallError("wait4", err)
		}
		switch {
		case ws.Exited() || ws.Signaled():
			return nil
		case ws.Stopped() && int(ws)>>16 == 0 && ws.StopSignal() != unix.SIGTRAP:
			deliver = int(ws.StopSignal()) // let the signal do its work
		default:
			deliver = 0
		}
	}
}
