// Package seed holds the restart seed (seed.c): a C constructor that stops
// a re-executed ckptfs before the Go runtime starts, so that restart can
// grow the restored forest out of a single-threaded process. A binary that
// restarts images must import this package; Start launches the seed.
package seed

// The constructor in seed.c is all the C there is; importing "C" links it.

import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Env is the environment entry that turns a ckptfs process into a seed.
const Env = "CKPTFS_SEED=1"

// Descriptors every task the seed makes inherits from it: stdin, stdout
// and stderr (/dev/null) and the control socket. A restored task that had
// no such descriptor must not keep it.
const Inherited = 4

// Seed is a started seed: the process, and the daemon's end of its control
// socket (see seed.c).
type Seed struct {
	Cmd     *exec.Cmd
	control *os.File
}

// Pid is the seed's pid.
func (s *Seed) Pid() int { return s.Cmd.Process.Pid }

// Start re-executes the running binary as a seed and returns once it has
// stopped itself, ready to be seized. Its stdin, stdout and stderr are
// /dev/null: the restored tasks inherit them until their own files are
// restored. The seed dies when the thread that calls Start exits, until
// it is let go (it is killed by a parent-death signal, which the daemon
// clears by injecting prctl(PR_SET_PDEATHSIG, 0) when it lets it go): call
// Start on a thread that lives as long as the restore, such as its
// tracer's.
func Start() (*Seed, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	// Our end non-blocking, so that reads from it can have a deadline.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, os.NewSyscallError("fcntl", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "seed control"), os.NewFile(uintptr(fds[1]), "seed control")
	defer theirs.Close()
	cmd := exec.Command(self, "seed")
	cmd.ExtraFiles = []*os.File{theirs} // fd 3, CONTROL_FD
	// No rseq area: the kernel writes to a registered one on every return
	// to user space, and restart unmaps the seed's memory from under its
	// copies (the restored tasks' own registrations come with their state).
	cmd.Env = []string{Env, "CKPTFS_SEED_PARENT=" + strconv.Itoa(os.Getpid()), "GLIBC_TUNABLES=glibc.pthread.rseq=0"}
	if err := cmd.Start(); err != nil {
		ours.Close()
		return nil, fmt.Errorf("start seed: %w", err)
	}
	s := &Seed{Cmd: cmd, control: ours}
	// Wait for its SIGSTOP without reaping it: WSTOPPED|WNOWAIT leaves the
	// state for the tracer to see.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WSTOPPED|unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err != nil && err != unix.EINTR {
			s.Kill()
			return nil, fmt.Errorf("seed pid %d: %w", cmd.Process.Pid, err)
		}
		if code := siginfoCode(&info); code == cldStopped {
			return s, nil
		} else if code == cldExited || code == cldKilled || code == cldDumped {
			cmd.Wait()
			ours.Close()
			return nil, fmt.Errorf("seed pid %d exited before stopping (is the seed package linked in?)", cmd.Process.Pid)
		}
		if time.Now().After(deadline) {
			s.Kill()
			return nil, fmt.Errorf("seed pid %d did not stop", cmd.Process.Pid)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// Guard hands the seed the processes it must kill should the daemon die
// before Commit, and waits for it to hold them all. The seed must be
// running (let go), and they must not be reaped yet.
func (s *Seed) Guard(pids []int, timeout time.Duration) error {
	const perMsg = 8 << 10
	for len(pids) > 0 {
		n := min(len(pids), perMsg)
		msg := make([]byte, 4, 4+4*n)
		msg[0] = 'P'
		for _, p := range pids[:n] {
			msg = binary.LittleEndian.AppendUint32(msg, uint32(p))
		}
		pids = pids[n:]
		if _, err := s.control.Write(msg); err != nil {
			return fmt.Errorf("seed %d: %w", s.Pid(), err)
		}
		s.control.SetReadDeadline(time.Now().Add(timeout))
		ans := make([]byte, 8)
		k, err := s.control.Read(ans)
		switch {
		case err != nil:
			return fmt.Errorf("seed %d: no answer: %w", s.Pid(), err)
		case k == 8 && ans[0] == 'E':
			return fmt.Errorf("seed %d: process %d is gone before the forest was let go", s.Pid(),
				binary.LittleEndian.Uint32(ans[4:]))
		case k < 1 || ans[0] != 'A':
			return fmt.Errorf("seed %d: unexpected answer %q", s.Pid(), ans[:k])
		}
	}
	return nil
}

// Commit tells the seed the forest is let go for good: it stops guarding
// and only reaps.
func (s *Seed) Commit() error {
	_, err := s.control.Write([]byte{'C'})
	s.control.Close()
	return err
}

// Abort tells a seed that guards to kill what it guards now. Closing the
// control socket (Kill, or the daemon's death) does the same.
func (s *Seed) Abort() {
	s.control.Write([]byte{'X'})
	s.control.Close()
}

// Kill ends a seed that was never let go, and reaps it.
func (s *Seed) Kill() {
	s.control.Close()
	s.Cmd.Process.Kill()
	s.Cmd.Wait()
}

// Wait waits up to timeout for the seed to exit (it does once every
// process it reaps is gone); past it, a goroutine goes on reaping it.
func (s *Seed) Wait(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- s.Cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil // killed, or exited with its own status: it is gone
		}
		return err
	case <-time.After(timeout):
		return fmt.Errorf("seed %d: still reaping after %v", s.Pid(), timeout)
	}
}
