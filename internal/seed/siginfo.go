package seed

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// si_code values of SIGCHLD (asm-generic/siginfo.h).
const (
	cldExited  = 1
	cldKilled  = 2
	cldDumped  = 3
	cldStopped = 5
)

// siginfoCode returns si_code, or 0 when waitid found nothing (it then
// leaves si_pid zero).
func siginfoCode(info *unix.Siginfo) int32 {
	// struct siginfo: si_signo, si_errno, si_code (int32 each), then for
	// SIGCHLD si_pid at offset 16.
	b := (*[24]byte)(unsafe.Pointer(info))
	pid := *(*int32)(unsafe.Pointer(&b[16]))
	if pid == 0 {
		return 0
	}
	return info.Code
}
