package inject

import (
	"bytes"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/sys"
)

// syscallInsn is x86-64's `syscall`.
var syscallInsn = []byte{0x0f, 0x05}

// Task is a stopped tracee that runs injected system calls. It must be
// traced with PTRACE_O_TRACESYSGOOD (see the package doc).
type Task struct {
	Tid   int
	Site  uint64          // address of a syscall instruction in the task
	Saved unix.PtraceRegs // registers at the stop, put back by Restore
	// Pending is a signal that stopped the task while we drove it; it is
	// delivered when the task is let go (unguarded tasks only).
	Pending int
	// Child is the tid (in the tracer's namespace) of the task the last
	// injected fork or clone created, from its ptrace event.
	Child int

	g *guard // set for a guarded task: see Guard
}

// New prepares tid, which must be in a ptrace stop, for unguarded calls at
// the syscall instruction of its vDSO.
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
	var r uint64
	var err error
	if t.g != nil {
		r, err = t.g.call(nr, a)
	} else {
		r, err = t.call(nr, a)
	}
	if err != nil {
		return 0, fmt.Errorf("pid %d: syscall %d: %w", t.Tid, nr, err)
	}
	if v := int64(r); v < 0 && v > -4096 {
		return 0, fmt.Errorf("pid %d: syscall %d: %w", t.Tid, nr, unix.Errno(-v))
	}
	return r, nil
}

// call runs an unguarded call at the task's site: from wherever it stopped
// to the call's entry stop, then to its exit stop. A call a signal
// interrupted (a restart code) is run again; the signal waits in Pending.
func (t *Task) call(nr uintptr, a [6]uint64) (uint64, error) {
	for {
		regs := t.Saved
		regs.Rip = t.Site
		regs.Rax = uint64(nr)
		regs.Orig_rax = ^uint64(0)
		regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
		if err := unix.PtraceSetRegs(t.Tid, &regs); err != nil {
			return 0, os.NewSyscallError("ptrace(SETREGS)", err)
		}
		entry, err := t.syscallStop(kill)
		if err != nil {
			return 0, err
		}
		if entry.Orig_rax != uint64(nr) || entry.Rip != t.Site+uint64(len(syscallInsn)) {
			return 0, fmt.Errorf("entered syscall %d at %#x, not %d after the instruction at %#x",
				int64(entry.Orig_rax), entry.Rip, nr, t.Site)
		}
		exit, err := t.syscallStop(kill)
		if err != nil {
			return 0, err
		}
		if !restartable(exit.Rax) {
			return exit.Rax, nil
		}
	}
}

// restartable reports the codes a call returns when a signal interrupted
// it and the kernel would run it again (include/linux/errno.h).
func restartable(rax uint64) bool {
	switch int64(rax) {
	case -512, -513, -514, -516: // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK
		return true
	}
	return false
}

// syscallStop resumes the task with PTRACE_SYSCALL until its next syscall
// stop, entry or exit, and returns its registers there. A signal that
// stops the task on the way is held back (Pending, or the guard's queue)
// to be delivered when the task is let go.
func (t *Task) syscallStop(unstick func(int)) (unix.PtraceRegs, error) {
	var regs unix.PtraceRegs
	atCall := func(ws unix.WaitStatus) bool { return int(ws.StopSignal()) == sysgood }
	hold := func(sig int) (int, error) { return 0, t.hold(sig) }
	if _, err := t.drive(unix.PtraceSyscall, unstick, atCall, hold); err != nil {
		return regs, err
	}
	return regs, sys.Wrap("ptrace(GETREGS)", unix.PtraceGetRegs(t.Tid, &regs))
}

// hold takes a signal that stopped the task in a signal-delivery-stop out
// of the way, to be delivered when the task is let go.
func (t *Task) hold(sig int) error {
	if t.g != nil {
		return t.g.hold(sig)
	}
	t.Pending = sig
	return nil
}

// Restore puts the task's saved registers back (for a guarded task, its
// mask and stack too: see Release).
func (t *Task) Restore() error {
	if t.g != nil {
		return t.g.release()
	}
	return sys.Wrap("ptrace(SETREGS)", unix.PtraceSetRegs(t.Tid, &t.Saved))
}
