// Package seed holds the restart seed (seed.c): a C constructor that stops
// a re-executed ckptfs before the Go runtime starts, so that restart can
// grow the restored forest out of a single-threaded process. A binary that
// restarts images must import this package; Start launches the seed.
package seed

// The constructor in seed.c is all the C there is; importing "C" links it.

import "C"

import (
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// Env is the environment entry that turns a ckptfs process into a seed.
const Env = "CKPTFS_SEED=1"

// Start re-executes the running binary as a seed and returns once it has
// stopped itself, ready to be seized. Its stdin, stdout and stderr are
// /dev/null: the restored tasks inherit them until their own files are
// restored.
func Start() (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "seed")
	// No rseq area: the kernel writes to a registered one on every return
	// to user space, and restart unmaps the seed's memory from under its
	// copies (the restored tasks' own registrations come with their state).
	cmd.Env = []string{Env, "GLIBC_TUNABLES=glibc.pthread.rseq=0"}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start seed: %w", err)
	}
	// Wait for its SIGSTOP without reaping it: WSTOPPED|WNOWAIT leaves the
	// state for the tracer to see.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WSTOPPED|unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err != nil && err != unix.EINTR {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("seed pid %d: %w", cmd.Process.Pid, err)
		}
		if code := siginfoCode(&info); code == cldStopped {
			return cmd, nil
		} else if code == cldExited || code == cldKilled || code == cldDumped {
			cmd.Wait()
			return nil, fmt.Errorf("seed pid %d exited before stopping (is the seed package linked in?)", cmd.Process.Pid)
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("seed pid %d did not stop", cmd.Process.Pid)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
