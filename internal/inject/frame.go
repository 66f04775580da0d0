package inject

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// The signal frame a guarded task returns through (struct rt_sigframe of
// arch/x86/include/asm/sigframe.h, x86-64), as rt_sigreturn reads it: the
// frame starts 8 bytes below the stack pointer (pretcode, which a handler's
// ret popped), then struct ucontext, then struct siginfo. The FPU state is
// anywhere the sigcontext's fpstate points, 64-byte aligned: here above the
// frame, so that a signal delivered to the task while it points at the
// frame lands below it and leaves it whole.
const (
	ucOff       = 8                // struct ucontext
	ucStackOff  = ucOff + 16       // uc_stack: ss_sp, ss_flags, ss_size
	mcontextOff = ucOff + 40       // uc_mcontext: struct sigcontext
	sigmaskOff  = ucOff + 40 + 256 // uc_sigmask
	fpOff       = 448              // after struct siginfo (at 312, 128 bytes), aligned
	dataSize    = 512              // the area for the calls' arguments and answers
	redZone     = 128              // below the stack pointer, the code's own
	fpMagic1    = 0x46505853       // FP_XSTATE_MAGIC1, in sw_reserved
	fpMagic2    = 0x46505845       // FP_XSTATE_MAGIC2, after the xsave area
	swReserved  = 464              // offset of sw_reserved in the fxsave area
	ucFlags     = 0x1 | 0x2 | 0x4  // UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS
	badSSFlags  = 3                // neither SS_ONSTACK nor SS_DISABLE: sigaltstack left alone
	sigsetBytes = 8
)

// frameLayout sizes the area of a guarded task whose xsave area is xsize
// bytes: the frame, the FPU state after it, then the data area.
func frameLayout(xsize int) (dataOff, size int) {
	dataOff = roundUp(fpOff+xsize+4, 64)
	return dataOff, dataOff + dataSize
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }

// sigFrame returns the bytes of the area at base for a task whose
// registers r, blocked mask and FPU state xs rt_sigreturn must give back.
func sigFrame(base uint64, r *unix.PtraceRegs, mask uint64, xs []byte) []byte {
	_, size := frameLayout(len(xs))
	b := make([]byte, size)
	le := binary.LittleEndian
	le.PutUint64(b[ucOff:], ucFlags)
	le.PutUint32(b[ucStackOff+8:], badSSFlags)
	sc := b[mcontextOff:]
	for i, v := range []uint64{r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15,
		r.Rdi, r.Rsi, r.Rbp, r.Rbx, r.Rdx, r.Rax, r.Rcx, r.Rsp, r.Rip, r.Eflags} {
		le.PutUint64(sc[8*i:], v)
	}
	le.PutUint16(sc[144:], uint16(r.Cs))
	le.PutUint16(sc[150:], uint16(r.Ss))
	le.PutUint64(sc[184:], base+fpOff) // fpstate
	le.PutUint64(b[sigmaskOff:], mask)

	// The FPU state as PTRACE_GETREGSET gave it (the standard xsave
	// format), with sw_reserved rewritten from ptrace's layout (XCR0 in
	// word 0) to the signal frame's (struct _fpx_sw_bytes), and the second
	// magic word after it: without both, the kernel would restore only
	// the legacy x87/SSE part and reset the rest.
	fp := b[fpOff:]
	copy(fp, xs)
	sw := fp[swReserved:512]
	clear(sw)
	le.PutUint32(sw[0:], fpMagic1)
	le.PutUint32(sw[4:], uint32(len(xs)+4)) // extended_size
	le.PutUint64(sw[8:], xcr0(xs))          // xfeatures
	le.PutUint32(sw[16:], uint32(len(xs)))  // xstate_size
	le.PutUint32(fp[len(xs):], fpMagic2)
	return b
}

// xcr0 is the feature mask ptrace reports in sw_reserved word 0
// (USER_XSTATE_XCR0_WORD).
func xcr0(xs []byte) uint64 { return binary.LittleEndian.Uint64(xs[swReserved:]) }

// resumeRegs are the registers the kernel would return to user space with
// from a task stopped with r in a PTRACE_INTERRUPT stop and let go: a call
// the stop interrupted is restarted (its number back in rax, rip back on
// the syscall instruction). rt_sigreturn does no such fixing, so the frame
// carries it done. A call interrupted with ERESTART_RESTARTBLOCK (a timed
// sleep) is run again from the start, with its arguments, which are still
// in their registers: rt_sigreturn resets the restart block that would have
// resumed it where it was, and a sleep a little longer is kinder to a
// program than an EINTR it never asked for.
func resumeRegs(r unix.PtraceRegs) unix.PtraceRegs {
	if int64(r.Orig_rax) < 0 {
		return r
	}
	switch int64(r.Rax) {
	case -512, -513, -514, -516: // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK
		r.Rax = r.Orig_rax
		r.Rip -= uint64(len(syscallInsn))
	}
	return r
}
