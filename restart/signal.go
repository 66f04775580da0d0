package restart

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/inject"
)

// ssDisable is sigaltstack's SS_DISABLE: no alternate stack.
const ssDisable = 2

// withStackArg passes arg to an injected call through the thread's own
// stack, below the red zone at rsp (inject.WithStackArg).
func (p *proc) withStackArg(rsp uint64, arg []byte, call func(addr uint64) error) error {
	return inject.WithStackArg(p.tid, rsp, arg, call)
}

// setSigHand gives the process its signal dispositions back.
func (p *proc) setSigHand(acts []image.SigAction, rsp uint64) error {
	le := binary.LittleEndian
	for _, a := range acts {
		arg := make([]byte, 32) // struct kernel_sigaction
		le.PutUint64(arg, a.Handler)
		le.PutUint64(arg[8:], a.Flags)
		le.PutUint64(arg[16:], a.Restorer)
		le.PutUint64(arg[24:], a.Mask)
		err := p.withStackArg(rsp, arg, func(addr uint64) error {
			_, err := p.syscall(unix.SYS_RT_SIGACTION, uint64(a.Signo), addr, 0, 8)
			return err
		})
		if err != nil {
			return fmt.Errorf("signal %d handler: %w", a.Signo, err)
		}
	}
	return nil
}

// setSigState gives a thread its blocked mask and alternate stack back.
func (p *proc) setSigState(s *image.SigState, rsp uint64) error {
	blocked := s.Blocked
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SETSIGMASK, uintptr(p.tid), 8,
		uintptr(unsafe.Pointer(&blocked)), 0, 0)
	if e != 0 {
		return os.NewSyscallError("ptrace(SETSIGMASK)", e)
	}
	if s.AltFlags&ssDisable != 0 {
		return nil
	}
	arg := make([]byte, 24) // stack_t: sp, flags, size
	binary.LittleEndian.PutUint64(arg, s.AltSP)
	binary.LittleEndian.PutUint64(arg[16:], s.AltSize)
	return p.withStackArg(rsp, arg, func(addr uint64) error {
		if _, err := p.syscall(unix.SYS_SIGALTSTACK, addr, 0); err != nil {
			return fmt.Errorf("sigaltstack: %w", err)
		}
		return nil
	})
}

// setThread registers the thread's clear_child_tid address and robust
// futex list again, as its thread library once did.
func (p *proc) setThread(t *image.Thread) error {
	if _, err := p.syscall(unix.SYS_SET_TID_ADDRESS, t.ClearChildTid); err != nil {
		return fmt.Errorf("set_tid_address: %w", err)
	}
	if t.RobustList != 0 {
		if _, err := p.syscall(unix.SYS_SET_ROBUST_LIST, t.RobustList, t.RobustLen); err != nil {
			return fmt.Errorf("set_robust_list: %w", err)
		}
	}
	return nil
}

// setITimers arms the process's interval timers again with what was left
// of them (a timer that had expired comes back disarmed, as it was).
func (p *proc) setITimers(t *[3]image.ITimer, rsp uint64) error {
	for which, it := range t {
		if it.Value == 0 && it.Interval == 0 {
			continue
		}
		if it.Value == 0 {
			// An interval timer that has expired and whose signal is still
			// pending reads 0 left: the kernel re-arms ITIMER_REAL only
			// when its SIGALRM is taken (dequeue_signal), and the frozen
			// process had not taken it yet. The signal comes back pending;
			// the timer is armed for its next interval, where a value of 0
			// would disarm it for good.
			it.Value = it.Interval
		}
		arg := make([]byte, 32) // struct itimerval: interval, then value
		le := binary.LittleEndian
		le.PutUint64(arg, it.Interval/1000000)
		le.PutUint64(arg[8:], it.Interval%1000000)
		le.PutUint64(arg[16:], it.Value/1000000)
		le.PutUint64(arg[24:], it.Value%1000000)
		err := p.withStackArg(rsp, arg, func(addr uint64) error {
			_, err := p.syscall(unix.SYS_SETITIMER, uint64(which), addr, 0)
			return err
		})
		if err != nil {
			return fmt.Errorf("setitimer %d: %w", which, err)
		}
	}
	return nil
}

// queueSignals queues the thread's pending signals again, each with its
// siginfo. The task queues them to itself, which the kernel allows for any
// si_code; they are delivered (or stay pending, if blocked) once it runs.
func (p *proc) queueSignals(ps []image.PendingSignal, rsp uint64) error {
	if len(ps) == 0 {
		return nil
	}
	tgid, err := p.syscall(unix.SYS_GETPID)
	if err != nil {
		return err
	}
	tid, err := p.syscall(unix.SYS_GETTID)
	if err != nil {
		return err
	}
	for _, s := range ps {
		sig := uint64(binary.LittleEndian.Uint32(s.Info[:]))
		err := p.withStackArg(rsp, s.Info[:], func(addr uint64) error {
			if s.Shared {
				_, err := p.syscall(unix.SYS_RT_SIGQUEUEINFO, tgid, sig, addr)
				return err
			}
			_, err := p.syscall(unix.SYS_RT_TGSIGQUEUEINFO, tgid, tid, sig, addr)
			return err
		})
		if err != nil {
			return fmt.Errorf("queue signal %d: %w", sig, err)
		}
	}
	return nil
}
