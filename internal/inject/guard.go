package inject

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/fault"
	"github.com/ckptfs/ckptfs/internal/ptrace"
	"github.com/ckptfs/ckptfs/internal/sys"
)

// allBlocked is the mask a guarded task runs its calls with: no signal
// can stop it on the way. SIGKILL and SIGSTOP cannot be blocked: the
// kernel drops them from any mask, so this is what it reads back.
const allBlocked = ^uint64(0) &^ (1<<(unix.SIGKILL-1) | 1<<(unix.SIGSTOP-1))

// point marks the instants of a guarded call's protocol where the tracer's
// death is tested (by the fault-injection tests, and by this package's
// tests, which make the tracer thread exit there).
var point = fault.Point

// guard is the state of a guarded task (see the package doc):
//
//   - Guard writes a signal frame of the task's registers (as the kernel
//     would resume them), FPU state and blocked mask into the scratch area,
//     then points the task at the sigreturn gadget with its stack at the
//     frame ("armed"), then blocks every signal. Let go at any of these
//     points, the task runs the gadget and rt_sigreturn gives it its own
//     registers, FPU state and mask back.
//   - A call resumes the task to the gadget's syscall-entry stop, turns the
//     rt_sigreturn there into the call, with the task's return address at
//     the gadget again, and resumes it to the call's exit stop. Let go
//     anywhere in between, the task finishes the call (calls made here only
//     read) and returns into the gadget.
//   - Release brings the task back to a PTRACE_INTERRUPT stop, gives it
//     its mask, then its exact registers (so the kernel's own restart of an
//     interrupted call applies as it would have), then the area's bytes.
type guard struct {
	t      *Task
	sp     *Space
	base   uint64 // the scratch area: frame, FPU state, data
	data   uint64 // where calls take arguments and leave answers
	saved  []byte // the area's bytes before
	mask   uint64 // the task's own blocked mask
	probed bool   // mask is the one the task returns to (see call)
	inCall bool   // parked at a call's exit stop, not at the first stop
	held   [][128]byte
	stuck  bool   // the watchdog sent SIGSTOP
	xs     []byte // the task's FPU state
	// copyFrame, for GuardFork, is where the frame of a copy the task
	// forks goes (see Fork); 0 otherwise.
	copyFrame uint64
}

// Guard prepares thread tid of space, stopped in a PTRACE_INTERRUPT stop
// or a group-stop, for calls that leave it as it was whatever instant its
// tracer dies. The caller must make sure the thread has no shadow stack
// (rt_sigreturn would check the frame against it) and no seccomp filter
// (which might refuse the calls). Restore ends the calls.
func Guard(sp *Space, tid int) (*Task, error) {
	return guardTask(sp, tid, false)
}

// GuardFork is Guard for a task that will fork a Copy of its process: its
// scratch area has room for the copy's own frame too (see Fork).
func GuardFork(sp *Space, tid int) (*Task, error) {
	return guardTask(sp, tid, true)
}

func guardTask(sp *Space, tid int, fork bool) (*Task, error) {
	t := &Task{Tid: tid, Site: sp.entry - uint64(len(syscallInsn))}
	if err := unix.PtraceGetRegs(tid, &t.Saved); err != nil {
		return nil, os.NewSyscallError("ptrace(GETREGS)", err)
	}
	if tid == sp.Tgid {
		sp.mainSP = t.Saved.Rsp
	}
	xs, err := ptrace.GetXState(tid)
	if err != nil {
		return nil, err
	}
	mask, err := ptrace.GetSigMask(tid)
	if err != nil {
		return nil, err
	}
	dataOff, size := frameLayout(len(xs))
	frameSize := size
	if fork {
		size += frameSize // the copy's frame follows the data area
	}
	base, err := sp.area(t.Saved.Rsp, size)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", tid, err)
	}
	g := &guard{t: t, sp: sp, base: base, data: base + uint64(dataOff), mask: mask, saved: make([]byte, size), xs: xs}
	if fork {
		g.copyFrame = base + uint64(frameSize)
	}
	if err := ReadMem(tid, base, g.saved); err != nil {
		return nil, fmt.Errorf("pid %d: read scratch area at %#x: %w", tid, base, err)
	}
	resume := resumeRegs(t.Saved)
	if err := WriteMem(tid, base, sigFrame(base, &resume, mask, xs)); err != nil {
		return nil, fmt.Errorf("pid %d: write signal frame at %#x: %w", tid, base, err)
	}
	armed := t.Saved
	armed.Rip, armed.Rsp, armed.Orig_rax = sp.gadget, base+ucOff, ^uint64(0)
	if err := unix.PtraceSetRegs(tid, &armed); err != nil {
		WriteMem(tid, base, g.saved)
		return nil, os.NewSyscallError("ptrace(SETREGS)", err)
	}
	t.g = g
	// Armed: from here on, a task let go returns through the frame.
	point("guard-armed")
	if err := ptrace.SetSigMask(tid, allBlocked); err != nil {
		g.release()
		return nil, err
	}
	point("guard-blocked")
	return t, nil
}

// Blocked returns the blocked mask the guarded task runs its own code
// with: for a task stopped in sigsuspend, ppoll or pselect, not the
// call's temporary mask but the one it returns to (see probeMask, which
// needs one call made; one is made here if none was).
func (t *Task) Blocked() (uint64, error) {
	if !t.g.probed {
		if _, err := t.Syscall(unix.SYS_GETPID); err != nil {
			return 0, err
		}
	}
	return t.g.mask, nil
}

// Data is the address of the area calls of a guarded task take their
// in-memory arguments from and leave their answers in; DataSize bytes.
func (t *Task) Data() uint64 { return t.g.data }

// DataSize is the size of a guarded task's data area.
const DataSize = dataSize

// ReadData reads the first n bytes of the data area.
func (t *Task) ReadData(n int) ([]byte, error) {
	if n > dataSize {
		return nil, fmt.Errorf("pid %d: %d bytes asked of a %d-byte data area", t.Tid, n, dataSize)
	}
	b := make([]byte, n)
	return b, ReadMem(t.Tid, t.g.data, b)
}

// Query runs a call that answers in the data area (its arguments name
// Data()) and returns the first n bytes of the answer.
func (t *Task) Query(n int, nr uintptr, args ...uint64) ([]byte, error) {
	if _, err := t.Syscall(nr, args...); err != nil {
		return nil, err
	}
	return t.ReadData(n)
}

// WriteData writes b at the start of the data area.
func (t *Task) WriteData(b []byte) error {
	if len(b) > dataSize {
		return fmt.Errorf("pid %d: %d bytes for a %d-byte data area", t.Tid, len(b), dataSize)
	}
	return WriteMem(t.Tid, t.g.data, b)
}

// sigstop is the watchdog's way to end a guarded call that never returns:
// SIGSTOP interrupts any sleep and cannot be blocked, and the stop it
// brings (a signal-delivery-stop we suppress) ends the tracer's wait.
func (g *guard) sigstop(tid int) {
	g.stuck = true
	unix.Tgkill(g.sp.Tgid, tid, unix.SIGSTOP)
}

// call runs one call of a guarded task, from wherever it is parked (its
// first stop, or the exit stop of its last call).
func (g *guard) call(nr uintptr, a [6]uint64) (uint64, error) {
	t := g.t
	entry, err := t.syscallStop(g.sigstop)
	if err != nil {
		return 0, err
	}
	if entry.Orig_rax != unix.SYS_RT_SIGRETURN || entry.Rip != g.sp.entry {
		return 0, fmt.Errorf("entered syscall %d at %#x, not the sigreturn gadget's at %#x",
			int64(entry.Orig_rax), entry.Rip, g.sp.entry)
	}
	g.inCall = true
	point("guard-entry")
	if err := g.probeMask(); err != nil {
		return 0, err
	}
	regs := entry
	regs.Orig_rax = uint64(nr)
	regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	regs.Rip = g.sp.gadget // where the task returns after the call
	if err := unix.PtraceSetRegs(t.Tid, &regs); err != nil {
		return 0, os.NewSyscallError("ptrace(SETREGS)", err)
	}
	point("guard-call")
	exit, err := t.syscallStop(g.sigstop)
	if err != nil {
		return 0, err
	}
	if exit.Rip != g.sp.gadget {
		return 0, fmt.Errorf("syscall %d returned to %#x, not to the gadget at %#x", nr, exit.Rip, g.sp.gadget)
	}
	point("guard-exit")
	return exit.Rax, nil
}

// probeMask learns, once the task has passed back from its first stop,
// which mask it returns to. A task stopped inside sigsuspend, ppoll or
// pselect runs with the call's temporary mask and keeps its own aside; on
// its way out of the first stop the kernel put its own back (and then ours
// is lost): that is the mask the frame and Release must give it.
func (g *guard) probeMask() error {
	if g.probed {
		return nil
	}
	g.probed = true
	m, err := ptrace.GetSigMask(g.t.Tid)
	if err != nil || m == allBlocked {
		return err
	}
	g.mask = m
	var b [sigsetBytes]byte
	binary.LittleEndian.PutUint64(b[:], m)
	if err := WriteMem(g.t.Tid, g.base+sigmaskOff, b[:]); err != nil {
		return err
	}
	return ptrace.SetSigMask(g.t.Tid, allBlocked)
}

// hold takes a signal that stopped the task while its calls ran (one
// that arrived before its mask was all blocked, or a SIGSTOP): it is
// queued to the thread again when the calls end, with its siginfo. The
// watchdog's own SIGSTOP is dropped.
func (g *guard) hold(sig int) error {
	if g.stuck && sig == int(unix.SIGSTOP) {
		return nil
	}
	info, err := ptrace.GetSigInfo(g.t.Tid)
	if err != nil {
		return err
	}
	g.held = append(g.held, info)
	return nil
}

// release ends the calls of a guarded task: it queues back what was
// held, brings the task back to a PTRACE_INTERRUPT stop, and gives it its
// mask, its registers and its area's bytes, in that order (each step is
// safe to be the last, see guard).
func (g *guard) release() error {
	t := g.t
	var errs []error
	for _, info := range g.held {
		errs = append(errs, g.requeue(info))
	}
	g.held = nil
	if g.inCall {
		if err := g.interrupt(); err != nil {
			// Not back in a stop we may change: leave it armed. Whenever
			// it is let go, it returns through the frame.
			return errors.Join(append(errs, err)...)
		}
		g.inCall = false
		point("guard-interrupted")
	}
	if err := ptrace.SetSigMask(t.Tid, g.mask); err != nil {
		return errors.Join(append(errs, err)...)
	}
	point("guard-unblocked")
	if err := unix.PtraceSetRegs(t.Tid, &t.Saved); err != nil {
		return errors.Join(append(errs, os.NewSyscallError("ptrace(SETREGS)", err))...)
	}
	point("guard-restored")
	t.g = nil
	errs = append(errs, WriteMem(t.Tid, g.base, g.saved))
	return errors.Join(errs...)
}

// requeue queues a held signal to the thread again, with its siginfo: the
// thread itself may (rt_tgsigqueueinfo on itself), even for the codes only
// the kernel sends.
func (g *guard) requeue(info [128]byte) error {
	sig := binary.LittleEndian.Uint32(info[:])
	if err := WriteMem(g.t.Tid, g.data, info[:]); err != nil {
		return err
	}
	_, err := g.t.Syscall(unix.SYS_RT_TGSIGQUEUEINFO, uint64(g.sp.Tgid), uint64(g.t.Tid), uint64(sig), g.data)
	if err != nil {
		return fmt.Errorf("queue signal %d again: %w", sig, err)
	}
	return nil
}

// interrupt brings a task parked at a call's exit stop back to a
// PTRACE_INTERRUPT stop, which it reaches inside the kernel's signal
// handling on its way out of the call, before it runs any of its code.
func (g *guard) interrupt() error {
	t := g.t
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(t.Tid, &regs); err != nil {
		return os.NewSyscallError("ptrace(GETREGS)", err)
	}
	// No call to restart on the way: the task is at the gadget.
	regs.Orig_rax = ^uint64(0)
	if err := unix.PtraceSetRegs(t.Tid, &regs); err != nil {
		return os.NewSyscallError("ptrace(SETREGS)", err)
	}
	if err := ptrace.Interrupt(t.Tid); err != nil {
		return err
	}
	atStop := func(ws unix.WaitStatus) bool { return sys.Event(ws) == unix.PTRACE_EVENT_STOP }
	letThrough := func(sig int) (int, error) {
		if sig == int(unix.SIGSTOP) && g.stuck {
			return 0, nil // the watchdog's: dropped
		}
		// A job-control stop that came meanwhile is let through: it stops
		// the task the way it was meant to (a group-stop, which is an event
		// stop). Anything else cannot arrive: every signal is blocked.
		return sig, nil
	}
	_, err := t.drive(unix.PtraceCont, g.sigstop, atStop, letThrough)
	return err
}
