package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
