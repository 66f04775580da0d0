// Package testenv holds what the packages' own tests share about the
// machine they run on.
package testenv

import (
	"os"
	"testing"
)

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
