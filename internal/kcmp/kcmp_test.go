package kcmp

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// The threads of this process share its descriptor table and fs struct;
// its parent does not (go test runs it by fork and exec).
func TestSameAndOrder(t *testing.T) {
	pid, ppid := os.Getpid(), os.Getppid()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	for _, k := range []Kind{Files, FS} {
		if same, err := Same(k, pid, tid); err != nil || !same {
			t.Errorf("%s of thread %d and its leader %d: same %v, %v", k, tid, pid, same, err)
		}
		c1, err1 := Compare(k, pid, ppid)
		c2, err2 := Compare(k, ppid, pid)
		if err1 != nil || err2 != nil {
			t.Skipf("kcmp with the parent: %v %v", err1, err2)
		}
		if c1 == 0 || c1 != -c2 {
			t.Errorf("%s: compare(self, parent) %d, compare(parent, self) %d", k, c1, c2)
		}
	}
	if _, err := Compare(Files, pid, 0x7ffffff0); err == nil {
		t.Errorf("kcmp with no such pid succeeded")
	}
}
