package restart

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/ptrace"
)

// Error codes a task stopped inside a system call may hold in rax
// (include/linux/errno.h): the kernel restarts the call when the task
// returns to user space.
const (
	errRestartRestartBlock = 516
	errEINTR               = 4
)

// regRSP is the index of rsp in struct user_regs_struct.
const regRSP = 19

// setRegs loads a thread's saved registers. A thread stopped in a call the
// kernel would resume through its restart block (nanosleep, poll with a
// timeout...) cannot be resumed that way, since the new task has no such
// block: like a signal handler would, it sees EINTR. Every other interrupted
// call is restarted by the kernel exactly as it would have been, because the
// task is released from the same kind of stop with the same rax and orig_rax.
func setRegs(tid int, r *image.Regs) error {
	gp := *(*unix.PtraceRegs)(unsafe.Pointer(&r.GP))
	if int64(gp.Orig_rax) >= 0 && int64(gp.Rax) == -errRestartRestartBlock {
		gp.Rax = uint64(^uint64(errEINTR - 1)) // -EINTR
	}
	if err := unix.PtraceSetRegs(tid, &gp); err != nil {
		return os.NewSyscallError("ptrace(SETREGS)", err)
	}
	if len(r.XSave) == 0 {
		return nil
	}
	iov := unix.Iovec{Base: &r.XSave[0]}
	iov.SetLen(len(r.XSave))
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SETREGSET, uintptr(tid),
		unix.NT_X86_XSTATE, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return os.NewSyscallError("ptrace(SETREGSET NT_X86_XSTATE)", e)
	}
	return nil
}

// checkXSave refuses an image whose FPU state this CPU cannot load: it uses
// xsave features (AVX-512, AMX ...) that are not enabled here.
func checkXSave(tid int, h *image.Header) error {
	size, features, err := ptrace.XState(tid)
	if err != nil {
		return err
	}
	if missing := h.XSaveFeatures &^ features; missing != 0 {
		return fmt.Errorf("restart: the image uses xsave features %#x this CPU lacks (it has %#x)", missing, features)
	}
	if int(h.XSaveSize) > size {
		return fmt.Errorf("restart: the image's xsave area is %d bytes, this CPU's %d", h.XSaveSize, size)
	}
	return nil
}
