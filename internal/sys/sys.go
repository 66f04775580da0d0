// Package sys holds what every raw system call of ckptfs needs, written
// once: an interrupted call retried, a failed one named in its error, and
// a wait status read the way the kernel writes it.
package sys

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Wrap names the call op in a failure: os.NewSyscallError, nil for nil.
func Wrap(op string, err error) error {
	if err != nil {
		return os.NewSyscallError(op, err)
	}
	return nil
}

// Retry runs call until it does not fail with EINTR.
func Retry(call func() error) error {
	for {
		if err := call(); err != unix.EINTR {
			return err
		}
	}
}

// Wait4 is wait4(2) retried on EINTR, its failure named.
func Wait4(pid int, options int) (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	var got int
	err := Retry(func() (err error) {
		got, err = unix.Wait4(pid, &ws, options, nil)
		return err
	})
	return got, ws, Wrap("wait4", err)
}

// Event is the ptrace event of a stop (status bits 16-23), 0 for none.
func Event(ws unix.WaitStatus) int { return int(ws) >> 16 & 0xff }

// Death says how a task ended, from the wait status of its exit.
func Death(ws unix.WaitStatus) string {
	if ws.Exited() {
		return "exit status " + strconv.Itoa(ws.ExitStatus())
	}
	return "killed by " + ws.Signal().String()
}
