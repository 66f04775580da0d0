package inject

import (
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/sys"
)

// StepTimeout bounds how long a task may take to come back from one
// injected call: one that never does (a call blocked for good) fails the
// operation instead of hanging it.
var StepTimeout = 10 * time.Second

// sysgood is the stop signal of a syscall stop under PTRACE_O_TRACESYSGOOD.
const sysgood = int(unix.SIGTRAP) | 0x80

// wait waits for tid to change state. A blocking wait4 leaves the CPU to
// the tracee, which polling would not; so that it cannot block for ever,
// a watchdog acts on a task that has not come back within timeout: unstick
// makes it stop (or die), which ends the wait, and the wait then reports
// ETIMEDOUT.
func wait(tid int, timeout time.Duration, unstick func(tid int)) (unix.WaitStatus, error) {
	var stuck atomic.Bool
	watchdog := time.AfterFunc(timeout, func() {
		stuck.Store(true)
		unstick(tid)
	})
	defer watchdog.Stop()
	_, ws, err := sys.Wait4(tid, unix.WALL)
	switch {
	case err != nil:
		return ws, err
	case stuck.Load():
		return ws, fmt.Errorf("no stop within %v: %w", timeout, unix.ETIMEDOUT)
	}
	return ws, nil
}

// kill is the watchdog's action on a task whose death is harmless (a task
// of a restore under construction).
func kill(tid int) { unix.Kill(tid, unix.SIGKILL) }

// isFault reports signals the injected instruction itself raised: going
// on would only raise them again.
func isFault(sig unix.Signal) bool {
	return sig == unix.SIGSEGV || sig == unix.SIGBUS || sig == unix.SIGILL || sig == unix.SIGFPE
}
