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
	bin := filepath.Join(t.TempDir(), "sockets")
	mustRun(t, "gcc", "-O2", "-o", bin, filepath.Join(env.modRoot, "tests", "workload", "sockets.c"))
	report := filepath.Join(t.TempDir(), "report")
	cmd := exec.Command(bin, report)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { killTree(t, pid); cmd.Process.Kill(); cmd.Wait() })
	waitLines(t, report, 5)

	img := filepath.Join(t.TempDir(), "img")
	checkpointTo(t, m, pid, img)
	before := reportLines(t, report)
	killTree(t, pid)
	cmd.Process.Kill()
	cmd.Wait()
	for _, l := range before {
		if !strings.HasSuffix(l, "stream=ok dgram=ok seq=ok own=ok") {
			t.Fatalf("before the cut: %q", l)
		}
	}
	if q, _ := strconv.Atoi(reportField(t, before[len(before)-1], "inq")); q == 0 {
		t.Logf("the stream happened to be empty at the last report: %q", before[len(before)-1])
	}

	out, r := restoreFile(t, m, img, "sockets")
	if r.code != 0 || out.Root != pid {
		t.Fatalf("restore: %s\noutcome %+v", r, out)
	}
	waitLines(t, report, len(before)+10)
	after := reportLines(t, report)[len(before):]
	prev := 0
	for _, l := range after {
		if !strings.HasPrefix(l, fmt.Sprintf("pid=%d ", pid)) || !strings.HasSuffix(l, "stream=ok dgram=ok seq=ok own=ok") {
			t.Errorf("after restore: %q", l)
		}
		n := lineCount(t, l)
		if n <= prev {
			t.Errorf("count went from %d to %d after restore", prev, n)
		}
		prev = n
	}
	// Items flowed after the cut: the producer, restored too, still sends.
	if first, last := lineCount(t, after[0]), lineCount(t, after[len(after)-1]); last-first < 50 {
		t.Errorf("the consumer took %d items in %d reports after restore", last-first, len(after))
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
	r := ckptfs(t, "checkpoint", strconv.Itoa(pid), "-o", img)
	if r.code == 0 || !strings.Contains(string(r.stderr), fmt.Sprintf("pid %d", pid)) ||
		!strings.Contains(string(r.stderr), "fd 3 is a unix socket connected to socket") {
		t.Errorf("checkpoint of a socket leading out: %s, want an error naming pid %d and fd 3", r, pid)
	}
	if r := ckptfs(t, "checkpoint", "--external=replace", strconv.Itoa(pid), "-o", img); r.code != 0 {
		t.Errorf("with --external=replace: %s", r)
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
