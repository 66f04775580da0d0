package checkpoint

import (
	"encoding/binary"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/inject"
)

// No /proc file shows a signal's handler or a thread's alternate stack, so
// the stopped task is made to tell them: rt_sigaction and sigaltstack with
// only an "old" argument, answered into its own stack below the red zone,
// whose bytes are put back after.

// readSigHand reads the disposition of every signal the process catches or
// ignores (the others are at their default, which a new task has too).
func readSigHand(t *inject.Task, caught, ignored uint64) ([]image.SigAction, error) {
	want := caught | ignored
	if want == 0 {
		return nil, nil
	}
	sc, err := inject.BorrowStack(t.Tid, t.Saved.Rsp, 32)
	if err != nil {
		return nil, err
	}
	var acts []image.SigAction
	for sig := uint32(1); sig <= image.MaxSignals; sig++ {
		if want&(1<<(sig-1)) == 0 {
			continue
		}
		// struct kernel_sigaction: handler, flags, restorer, mask.
		if _, err := t.Syscall(unix.SYS_RT_SIGACTION, uint64(sig), 0, sc.Addr, 8); err != nil {
			sc.Release()
			return nil, err
		}
		b, err := sc.Read(32)
		if err != nil {
			sc.Release()
			return nil, err
		}
		le := binary.LittleEndian
		acts = append(acts, image.SigAction{Signo: sig, Handler: le.Uint64(b), Flags: le.Uint64(b[8:]),
			Restorer: le.Uint64(b[16:]), Mask: le.Uint64(b[24:])})
	}
	return acts, sc.Release()
}

// readSigState reads a thread's blocked mask (PTRACE_GETSIGMASK) and its
// alternate signal stack.
func readSigState(t *inject.Task) (*image.SigState, error) {
	var s image.SigState
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGMASK, uintptr(t.Tid), 8,
		uintptr(unsafe.Pointer(&s.Blocked)), 0, 0)
	if e != 0 {
		return nil, os.NewSyscallError("ptrace(GETSIGMASK)", e)
	}
	sc, err := inject.BorrowStack(t.Tid, t.Saved.Rsp, 24)
	if err != nil {
		return nil, err
	}
	if _, err := t.Syscall(unix.SYS_SIGALTSTACK, 0, sc.Addr); err != nil {
		sc.Release()
		return nil, err
	}
	b, err := sc.Read(24)
	if err != nil {
		sc.Release()
		return nil, err
	}
	le := binary.LittleEndian
	s.AltSP, s.AltFlags, s.AltSize = le.Uint64(b), le.Uint32(b[8:]), le.Uint64(b[16:])
	return &s, sc.Release()
}

// readThread reads the addresses a thread library registered with the
// kernel: clear_child_tid, which only the thread itself can tell
// (PR_GET_TID_ADDRESS), and the robust futex list (get_robust_list).
func readThread(t *inject.Task) (*image.Thread, error) {
	sc, err := inject.BorrowStack(t.Tid, t.Saved.Rsp, 8)
	if err != nil {
		return nil, err
	}
	if _, err := t.Syscall(unix.SYS_PRCTL, unix.PR_GET_TID_ADDRESS, sc.Addr); err != nil {
		sc.Release()
		return nil, err
	}
	b, err := sc.Read(8)
	if rerr := sc.Release(); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
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
	sc, err := inject.BorrowStack(t.Tid, t.Saved.Rsp, 32)
	if err != nil {
		return nil, err
	}
	var timers [3]image.ITimer
	le := binary.LittleEndian
	usec := func(b []byte) uint64 { return le.Uint64(b)*1000000 + le.Uint64(b[8:]) }
	for which := range timers {
		if _, err := t.Syscall(unix.SYS_GETITIMER, uint64(which), sc.Addr); err != nil {
			sc.Release()
			return nil, err
		}
		b, err := sc.Read(32) // struct itimerval: interval, then value
		if err != nil {
			sc.Release()
			return nil, err
		}
		timers[which] = image.ITimer{Interval: usec(b), Value: usec(b[16:])}
	}
	return &timers, sc.Release()
}

// readPending reads the signals queued to a thread (and, with shared, to its
// whole process) without taking them: PTRACE_PEEKSIGINFO. held is a signal
// that stopped the thread during the freeze; it was taken from the queue
// then, and is given back to the thread at thaw, so it is pending too.
func readPending(tid int, shared bool, held int) ([]image.PendingSignal, error) {
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
	if held != 0 {
		var p image.PendingSignal
		binary.LittleEndian.PutUint32(p.Info[:], uint32(held)) // si_signo; si_code SI_USER
		out = append(out, p)
	}
	return out, nil
}
