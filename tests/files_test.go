package tests

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRestoreUnlinkedFilesAndFifo: a deleted file kept open, a sealed memfd
// and a named pipe between two processes with bytes in it, through the
// mount: after kill and restore the files have their contents, offset,
// mode, seals and name, the pipe's stream goes on without a gap or a
// repeat, and the stdin the process had closed is still closed.
func TestRestoreUnlinkedFilesAndFifo(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	bin := filepath.Join(t.TempDir(), "files")
	mustRun(t, "gcc", "-O2", "-o", bin, filepath.Join(env.modRoot, "tests", "workload", "files.c"))
	dir := t.TempDir()
	report := filepath.Join(dir, "report")
	cmd := exec.Command(bin, report, dir)
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
	const good = "deleted=ok memfd=ok fifo=ok closed=ok"
	if l := before[len(before)-1]; !strings.HasSuffix(l, good) {
		t.Fatalf("before the cut: %q", l)
	}

	out, r := restoreFile(t, m, img, "files")
	if r.code != 0 || out.Root != pid {
		t.Fatalf("restore: %s\noutcome %+v", r, out)
	}
	waitLines(t, report, len(before)+10)
	after := reportLines(t, report)[len(before):]
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
		t.Errorf("the reader took %d items in %d reports after restore", last-first, len(after))
	}
	// The deleted file is a file of its own again, still without a name.
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", pid))
	if err != nil || !strings.HasSuffix(link, " (deleted)") || !strings.HasPrefix(link, dir+"/") {
		t.Errorf("restored fd 3 is %q (%v), want an unlinked file in %s", link, err, dir)
	}
}

// TestSharedAnonymousMemoryRefused: memory two processes share through
// MAP_SHARED|MAP_ANONYMOUS cannot be shared again after a restore, so the
// checkpoint fails naming both pids, and leaves the tree running.
func TestSharedAnonymousMemoryRefused(t *testing.T) {
	requireEnv(t)
	cmd := exec.Command("python3", "-c", `import mmap, os, sys, time
m = mmap.mmap(-1, 4096)  # shared and anonymous
if os.fork() == 0:
    time.sleep(100)
    os._exit(0)
print("ready", flush=True)
time.sleep(100)`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { killTree(t, pid); cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("workload: %q, %v", buf, err)
	}
	r := ckptfs(t, "checkpoint", strconv.Itoa(pid), "-o", filepath.Join(t.TempDir(), "img"))
	if r.code == 0 || !strings.Contains(string(r.stderr), fmt.Sprintf("is shared with pid %d", pid)) {
		t.Errorf("checkpoint of memory shared by two processes: %s, want it refused naming pid %d", r, pid)
	}
	assertRunning(t, "after the refusal", subtree(pid))
}
