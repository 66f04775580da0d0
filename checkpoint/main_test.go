package checkpoint

import (
	"os"
	"testing"

	"github.com/ckptfs/ckptfs/internal/ptrace"
)

// TestMain keeps the main thread off every tracer (ptrace.ReserveMainThread).
func TestMain(m *testing.M) {
	ptrace.ReserveMainThread()
	os.Exit(m.Run())
}
