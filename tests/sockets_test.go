package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRestoreSocketPairs: a producer keeps stream, datagram and seqpacket
// socket pairs full while a slow consumer checks every item is the next
// one. Checkpointed through the mount, killed and restored, the consumer
// goes on from where the image left it: nothing queued at the cut is lost
// or repeated, the datagram end is still non-blocking, and a pair within
// one process keeps its queued "hello" and its shutdown.
func TestRestoreSocketPairs(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	report := filepath.Join(t.TempDir(), "report")
	w := startLogWorkload(t, exec.Command(buildWorkload(t, "sockets"), report), report)
	before, after := w.cutAndRestore(t, m, "sockets", 10)
	const good = "stream=ok dgram=ok seq=ok own=ok"
	for _, l := range before {
		if strings.HasPrefix(l, "pid=") && !strings.HasSuffix(l, good) {
			t.Fatalf("before the cut: %q", l)
		}
	}
	checkResumed(t, w.pid, after, good)
}

// checkResumed checks the lines a restored log workload wrote: its pid, every
// check ok, a count that goes up without a repeat, and items flowing (the
// producer, restored too, still sends).
func checkResumed(t *testing.T, pid int, after []string, good string) {
	t.Helper()
	prev := 0
	for _, l := range after {
		if !strings.HasPrefix(l, fmt.Sprintf("pid=%d ", pid)) || !strings.HasSuffix(l, good) {
			t.Errorf("after restore: %q", l)
		}
		if n := lineCount(t, l); n <= prev {
			t.Errorf("count went from %d to %d after restore", prev, n)
		} else {
			prev = n
		}
	}
	if first, last := lineCount(t, after[0]), lineCount(t, after[len(after)-1]); last-first < 50 {
		t.Errorf("%d items taken in %d reports after restore", last-first, len(after))
	}
}

// TestUnixSocketLeadingOut: a unix socket whose peer is outside the tree is
// refused, naming the task, the descriptor and the peer, unless the user
// asks for it to be replaced.
func TestUnixSocketLeadingOut(t *testing.T) {
	requireEnv(t)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	defer ours.Close()
	cmd := exec.Command("sleep", "100")
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(50 * time.Millisecond)

	img := filepath.Join(t.TempDir(), "img")
	r := ckptfs(t, "checkpoint", "--external=refuse", strconv.Itoa(pid), "-o", img)
	if r.code == 0 || !strings.Contains(string(r.stderr), fmt.Sprintf("pid %d", pid)) ||
		!strings.Contains(string(r.stderr), "fd 3 is a unix socket connected to socket") {
		t.Errorf("checkpoint of a socket leading out: %s, want an error naming pid %d and fd 3", r, pid)
	}
	if r := ckptfs(t, "checkpoint", strconv.Itoa(pid), "-o", img); r.code != 0 {
		t.Errorf("by default (--external=replace): %s", r)
	}
}

// waitLines waits for a report file to hold at least n lines.
func waitLines(t *testing.T, report string, n int) {
	t.Helper()
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if data, err := os.ReadFile(report); err == nil && strings.Count(string(data), "\n") >= n {
			return
		}
	}
	t.Fatalf("%s did not reach %d lines", report, n)
}
