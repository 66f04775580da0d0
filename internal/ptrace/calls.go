package ptrace

import (
	"context"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/sys"
)

// The functions below must run on the tracer's thread, inside Tracer.Do.

// Seize attaches to tid without stopping it (PTRACE_SEIZE). Unlike
// PTRACE_ATTACH it sends no SIGSTOP, so it never disturbs the task's own
// job control.
func Seize(tid int, options int) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(tid), 0, uintptr(options), 0, 0)
	if e != 0 {
		return os.NewSyscallError("ptrace(SEIZE)", e)
	}
	return nil
}

// Interrupt asks a seized task to stop (PTRACE_INTERRUPT).
func Interrupt(tid int) error {
	return sys.Wrap("ptrace(INTERRUPT)", unix.PtraceInterrupt(tid))
}

// Detach lets the task go, delivering sig (0 for none).
func Detach(tid int, sig int) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(tid), 0, uintptr(sig), 0, 0)
	if e != 0 {
		return os.NewSyscallError("ptrace(DETACH)", e)
	}
	return nil
}

// Stop is how a task reported itself stopped.
type Stop struct {
	Exited bool            // the task exited (or was killed) instead
	Status unix.WaitStatus // the raw wait status
	// Signal is a signal the task was about to receive when it stopped
	// (signal-delivery-stop): it must be handed back on detach.
	Signal int
}

// WaitStop waits up to timeout for tid to report a stop or its exit, or
// until ctx is done. It polls with WNOHANG: a blocking wait could not be
// abandoned, and a task that never stops (blocked in an uninterruptible
// sleep, say on our own mount) must give an error, not a hung daemon.
func WaitStop(ctx context.Context, tid int, timeout time.Duration) (Stop, error) {
	deadline := time.Now().Add(timeout)
	pause := 20 * time.Microsecond
	for {
		pid, ws, err := sys.Wait4(tid, unix.WNOHANG|unix.WALL)
		if err != nil {
			return Stop{}, err
		}
		if pid == tid {
			switch {
			case ws.Exited() || ws.Signaled():
				return Stop{Exited: true, Status: ws}, nil
			case ws.Stopped():
				st := Stop{Status: ws}
				// An event stop carries the event in bits 16-23; a plain
				// stop with a signal is a signal-delivery-stop, unless it
				// is a group-stop (reported as PTRACE_EVENT_STOP too).
				if ws.TrapCause() == 0 {
					st.Signal = int(ws.StopSignal())
				}
				return st, nil
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return Stop{}, err
		}
		if time.Now().After(deadline) {
			return Stop{}, os.NewSyscallError("wait4", unix.ETIMEDOUT)
		}
		time.Sleep(pause)
		if pause < time.Millisecond {
			pause *= 2
		}
	}
}

// GetSigMask returns tid's blocked signal mask (PTRACE_GETSIGMASK).
func GetSigMask(tid int) (uint64, error) {
	var mask uint64
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGMASK, uintptr(tid), 8,
		uintptr(unsafe.Pointer(&mask)), 0, 0)
	if e != 0 {
		return 0, os.NewSyscallError("ptrace(GETSIGMASK)", e)
	}
	return mask, nil
}

// SetSigMask sets tid's blocked signal mask (PTRACE_SETSIGMASK). The
// kernel leaves SIGKILL and SIGSTOP unblocked whatever mask says.
func SetSigMask(tid int, mask uint64) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SETSIGMASK, uintptr(tid), 8,
		uintptr(unsafe.Pointer(&mask)), 0, 0)
	if e != 0 {
		return os.NewSyscallError("ptrace(SETSIGMASK)", e)
	}
	return nil
}

// GetXState returns tid's FPU/xsave area (PTRACE_GETREGSET
// NT_X86_XSTATE), in the standard (uncompacted) format.
func GetXState(tid int) ([]byte, error) {
	buf := make([]byte, 16384)
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETREGSET, uintptr(tid),
		unix.NT_X86_XSTATE, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return nil, os.NewSyscallError("ptrace(GETREGSET NT_X86_XSTATE)", e)
	}
	return buf[:iov.Len], nil
}

// SetXState loads tid's FPU/xsave area (PTRACE_SETREGSET NT_X86_XSTATE).
func SetXState(tid int, xs []byte) error {
	iov := unix.Iovec{Base: &xs[0]}
	iov.SetLen(len(xs))
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SETREGSET, uintptr(tid),
		unix.NT_X86_XSTATE, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return os.NewSyscallError("ptrace(SETREGSET NT_X86_XSTATE)", e)
	}
	return nil
}

// GetSigInfo returns the siginfo of the signal that stopped tid in a
// signal-delivery-stop (PTRACE_GETSIGINFO), as the kernel's 128 bytes.
func GetSigInfo(tid int) ([128]byte, error) {
	var info [128]byte
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGINFO, uintptr(tid), 0,
		uintptr(unsafe.Pointer(&info)), 0, 0)
	if e != 0 {
		return info, os.NewSyscallError("ptrace(GETSIGINFO)", e)
	}
	return info, nil
}

// XState reads the FPU/xsave area of tid and returns its size and the
// XCR0 feature mask the kernel stores in its software-reserved bytes.
func XState(tid int) (size int, features uint64, err error) {
	buf, err := GetXState(tid)
	if err != nil {
		return 0, 0, err
	}
	return len(buf), XStateFeatures(buf), nil
}

// XStateFeatures returns the XCR0 feature mask of an xsave area read with
// GetXState. struct user_xstateregs: the i387 fxsave area (512 bytes),
// whose bytes 464..511 (sw_reserved) ptrace fills with
// xstate_fx_sw_bytes; word 0 (USER_XSTATE_XCR0_WORD) is XCR0. Kernel ABI.
func XStateFeatures(xs []byte) uint64 {
	const xcr0Offset = 464
	if len(xs) < xcr0Offset+8 {
		return 0
	}
	return *(*uint64)(unsafe.Pointer(&xs[xcr0Offset]))
}
