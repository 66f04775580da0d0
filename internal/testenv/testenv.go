// Package testenv holds what the packages' own tests share about the
// machine they run on.
package testenv

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// The shell a test binary is started from may leak descriptors into it, and
// Go hands inherited descriptors on to every process it starts. A workload
// holding such a descriptor (say a pipe to that shell) leads outside its
// tree, which checkpoint rightly refuses. So every test binary that imports
// this package marks them close-on-exec first.
func init() { CloseInherited() }

// CloseInherited marks every descriptor above stderr close-on-exec.
func CloseInherited() {
	unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
}

// NeedRoot skips a test that must ptrace other processes or choose pids,
// unless the environment demands that it run (CI sets
// CKPTFS_REQUIRE_ROOT=1, which turns the skip into a failure).
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CKPTFS_REQUIRE_ROOT") == "1" {
		t.Fatal("CKPTFS_REQUIRE_ROOT=1 but not running as root")
	}
	t.Skip("needs root to ptrace other processes and to choose pids")
}
