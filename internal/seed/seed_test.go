package seed

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/testenv"
)

// TestMain lets the test binary itself serve as the seed, as ckptfs does.
func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

func TestSeedStopsBeforeGo(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	pid := s.Pid()
	defer s.Kill()
	// Still single-threaded: the Go runtime never started.
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 {
		t.Errorf("seed has %d threads, want 1 (the Go runtime started?)", len(tasks))
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stat), ") T ") {
		t.Errorf("seed is not stopped: %s", stat)
	}
	// Let it go: it guards nothing, is told to commit, reaps nothing and
	// exits 0.
	if err := unix.Kill(pid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Cmd.Wait(); err != nil {
		t.Errorf("seed exit: %v, want success", err)
	}
}

// TestSeedGuards: a seed let go holds the processes it is given; if the
// daemon goes away (its end of the control socket closes) before it
// commits, the seed kills them all; after a commit it leaves them be.
func TestSeedGuards(t *testing.T) {
	testenv.NeedRoot(t)
	for _, commit := range []bool{false, true} {
		t.Run(map[bool]string{false: "daemon-gone", true: "committed"}[commit], func(t *testing.T) {
			victim := exec.Command("sleep", "100")
			if err := victim.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { victim.Process.Kill(); victim.Wait() }()
			s, err := Start()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Kill()
			unix.Kill(s.Pid(), unix.SIGCONT)
			if err := s.Guard([]int{victim.Process.Pid}, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if commit {
				if err := s.Commit(); err != nil {
					t.Fatal(err)
				}
			} else {
				s.control.Close() // as the daemon's death would
			}
			if err := s.Wait(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- victim.Wait() }()
			select {
			case err := <-done:
				if commit {
					t.Errorf("the committed process died: %v", err)
				} else if ws, ok := victim.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
					t.Errorf("the guarded process ended with %v, want SIGKILL", err)
				}
			case <-time.After(300 * time.Millisecond):
				if !commit {
					t.Errorf("the guarded process still runs after the daemon went away")
				}
			}
		})
	}
}

// TestSeedGuardRefusesGone: a pid that no longer exists is named.
func TestSeedGuardRefusesGone(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	unix.Kill(s.Pid(), unix.SIGCONT)
	err = s.Guard([]int{1 << 30}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(1<<30)) {
		t.Errorf("Guard of a missing pid: %v, want an error naming it", err)
	}
}
