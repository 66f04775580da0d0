package seed

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary itself serve as the seed, as ckptfs does.
func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

func TestSeedStopsBeforeGo(t *testing.T) {
	cmd, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
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
	// Let it go: with no children it reaps nothing and exits 0.
	if err := unix.Kill(pid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("seed exit: %v, want success", err)
	}
}
