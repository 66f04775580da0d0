package checkpoint

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/ptrace"
)

// readRegs reads a stopped thread's general registers and xsave area.
func readRegs(tid int) (*image.Regs, error) {
	var gp unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &gp); err != nil {
		return nil, os.NewSyscallError("ptrace(GETREGS)", err)
	}
	xs, err := ptrace.GetXState(tid)
	if err != nil {
		return nil, err
	}
	return &image.Regs{GP: *(*[27]uint64)(unsafe.Pointer(&gp)), XSave: xs}, nil
}

// readRSeq reads a thread's rseq registration, or nil if it has none.
func readRSeq(tid int) (*image.RSeq, error) {
	// struct ptrace_rseq_configuration
	var c struct {
		Pointer         uint64
		Size, Signature uint32
		Flags, Pad      uint32
	}
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GET_RSEQ_CONFIGURATION, uintptr(tid),
		unsafe.Sizeof(c), uintptr(unsafe.Pointer(&c)), 0, 0)
	if e != 0 {
		return nil, os.NewSyscallError("ptrace(GET_RSEQ_CONFIGURATION)", e)
	}
	if c.Pointer == 0 {
		return nil, nil
	}
	return &image.RSeq{Pointer: c.Pointer, Size: c.Size, Signature: c.Signature, Flags: c.Flags}, nil
}

// The layout of unix.PtraceRegs must be struct user_regs_struct's.
var _ [27 * 8]byte = [unsafe.Sizeof(unix.PtraceRegs{})]byte{}
