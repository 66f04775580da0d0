package checkpoint

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/inject"
)

// No /proc file shows a signal's handler or a thread's alternate stack, so
// the stopped task is made to tell them, through guarded calls that answer
// in its data area (inject.Guard): rt_sigaction and sigaltstack with only
// an "old" argument, PR_GET_TID_ADDRESS, getitimer.

// readSigHand reads the disposition of every signal the process catches or
// ignores (the others are at their default, which a new task has too).
func readSigHand(t *inject.Task, caught, ignored uint64) ([]image.SigAction, error) {
	want := caught | ignored
	var acts []image.SigAction
	for sig := uint32(1); sig <= image.MaxSignals; sig++ {
		if want&(1<<(sig-1)) == 0 {
			continue
		}
		// struct kernel_sigaction: handler, flags, restorer, mask.
		b, err := t.Query(32, unix.SYS_RT_SIGACTION, uint64(sig), 0, t.Data(), 8)
		if err != nil {
			return nil, fmt.Errorf("rt_sigaction(%d): %w", sig, err)
		}
		le := binary.LittleEndian
		acts = append(acts, image.SigAction{Signo: sig, Handler: le.Uint64(b), Flags: le.Uint64(b[8:]),
			Restorer: le.Uint64(b[16:]), Mask: le.Uint64(b[24:])})
	}
	return acts, nil
}

// readSigState reads a thread's blocked mask and its alternate signal
// stack. The mask is the one the thread runs its own code with, which the
// guard knows (a thread stopped in sigsuspend has another for the while).
func readSigState(t *inject.Task) (*image.SigState, error) {
	blocked, err := t.Blocked()
	if err != nil {
		return nil, err
	}
	s := image.SigState{Blocked: blocked}
	b, err := t.Query(24, unix.SYS_SIGALTSTACK, 0, t.Data())
	if err != nil {
		return nil, fmt.Errorf("sigaltstack: %w", err)
	}
	le := binary.LittleEndian
	s.AltSP, s.AltFlags, s.AltSize = le.Uint64(b), le.Uint32(b[8:]), le.Uint64(b[16:])
	return &s, nil
}

// readThread reads the addresses a thread library registered with the
// kernel: clear_child_tid, which only the thread itself can tell
// (PR_GET_TID_ADDRESS), and the robust futex list (get_robust_list).
func readThread(t *inject.Task) (*image.Thread, error) {
	b, err := t.Query(8, unix.SYS_PRCTL, unix.PR_GET_TID_ADDRESS, t.Data())
	if err != nil {
		return nil, fmt.Errorf("PR_GET_TID_ADDRESS: %w", err)
	}
	th := &image.Thread{ClearChildTid: binary.LittleEndian.Uint64(b)}
	var head, size uint64
	_, _, e := unix.Syscall(unix.SYS_GET_ROBUST_LIST, uintptr(t.Tid), uintptr(unsafe.Pointer(&head)), uintptr(unsafe.Pointer(&size)))
	if e != 0 {
		return nil, os.NewSyscallError("get_robust_list", e)
	}
	th.RobustList, th.RobustLen = head, size
	return th, nil
}

// readITimers reads the process's three interval timers (getitimer).
func readITimers(t *inject.Task) (*[3]image.ITimer, error) {
	var timers [3]image.ITimer
	le := binary.LittleEndian
	usec := func(b []byte) uint64 { return le.Uint64(b)*1000000 + le.Uint64(b[8:]) }
	for which := range timers {
		b, err := t.Query(32, unix.SYS_GETITIMER, uint64(which), t.Data()) // struct itimerval: interval, then value
		if err != nil {
			return nil, fmt.Errorf("getitimer(%d): %w", which, err)
		}
		timers[which] = image.ITimer{Interval: usec(b), Value: usec(b[16:])}
	}
	return &timers, nil
}

// readPending reads the signals queued to a thread (and, with shared, to its
// whole process) without taking them: PTRACE_PEEKSIGINFO. (No signal is
// ever held aside by the freeze: see freeze.go.)
func readPending(tid int, shared bool) ([]image.PendingSignal, error) {
	var out []image.PendingSignal
	queues := []uint32{0}
	if shared {
		queues = append(queues, unix.PTRACE_PEEKSIGINFO_SHARED)
	}
	for _, flags := range queues {
		for off := uint64(0); ; {
			args := struct {
				Off   uint64
				Flags uint32
				Nr    int32
			}{off, flags, 32}
			var buf [32][128]byte
			n, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_PEEKSIGINFO, uintptr(tid),
				uintptr(unsafe.Pointer(&args)), uintptr(unsafe.Pointer(&buf[0])), 0, 0)
			if e != 0 {
				return nil, os.NewSyscallError("ptrace(PEEKSIGINFO)", e)
			}
			for i := 0; i < int(n); i++ {
				out = append(out, image.PendingSignal{Shared: flags != 0, Info: buf[i]})
			}
			if n < 32 {
				break
			}
			off += uint64(n)
		}
	}
	return out, nil
}
