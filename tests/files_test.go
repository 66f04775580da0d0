package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRestoreUnlinkedFilesAndFifo: a deleted file kept open, a sealed memfd
// and a named pipe between two processes with bytes in it, through the
// mount: after kill and restore the files have their contents, offset,
// mode, seals and name, the pipe's stream goes on without a gap or a
// repeat, and the stdin the process had closed is still closed.
func TestRestoreUnlinkedFilesAndFifo(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	dir := t.TempDir()
	report := filepath.Join(dir, "report")
	w := startLogWorkload(t, exec.Command(buildWorkload(t, "files"), report, dir), report)
	before, after := w.cutAndRestore(t, m, "files", 10)
	const good = "deleted=ok memfd=ok fifo=ok closed=ok"
	if l := before[len(before)-1]; !strings.HasSuffix(l, good) {
		t.Fatalf("before the cut: %q", l)
	}
	checkResumed(t, w.pid, after, good)
	// The deleted file is a file of its own again, still without a name.
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", w.pid))
	if err != nil || !strings.HasSuffix(link, " (deleted)") || !strings.HasPrefix(link, dir+"/") {
		t.Errorf("restored fd 3 is %q (%v), want an unlinked file in %s", link, err, dir)
	}
}

// TestRestoreSharedAnonymousMemory: a parent and child share a page of
// MAP_SHARED|MAP_ANONYMOUS memory; the parent counts in it, the child
// reports what it sees. After kill and restore the child still sees the
// parent's count move: they share one page again, not a copy each.
func TestRestoreSharedAnonymousMemory(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	report := filepath.Join(t.TempDir(), "report")
	cmd := exec.Command("python3", "-c", `import mmap, os, struct, sys, time
m = mmap.mmap(-1, 4096)  # shared and anonymous
if os.fork() == 0:
    while True:
        with open(sys.argv[1], "a") as f:
            f.write("n=%d\n" % struct.unpack_from("Q", m, 0))
        time.sleep(0.02)
n = 0
while True:
    n += 1
    struct.pack_into("Q", m, 0, n)
    time.sleep(0.005)`, report)
	w := startLogWorkload(t, cmd, report)
	_, after := w.cutAndRestore(t, m, "shared", 10)
	first, last := lineCount(t, after[0]), lineCount(t, after[len(after)-1])
	if last <= first {
		t.Errorf("the child saw the shared count go from %d to %d after restore: the page is not shared", first, last)
	}
	// And a checkpoint of the restored tree works: its memory is shared
	// anonymous memory again.
	checkpointTo(t, m, w.pid, filepath.Join(t.TempDir(), "again"))
}

// TestRestoreOpensAsCaller: an unprivileged restore opens the files the
// image names with the caller's rights, not the daemon's. A process of
// nobody's that reads a file is checkpointed; the file then becomes root's
// alone. Restoring it as nobody must fail, naming the file, and leave
// nothing running: otherwise nobody would get a descriptor to a file it may
// not read. Once others may read the file again, the same restore works.
func TestRestoreOpensAsCaller(t *testing.T) {
	requireEnv(t)
	m := testMount(t, "--allow-other")
	dir, err := os.MkdirTemp(env.workDir, "gate-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(secret)
	if err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd := exec.Command("sleep", "100")
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = nobody
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); syscall.Kill(pid, syscall.SIGKILL) })
	time.Sleep(50 * time.Millisecond)
	img := filepath.Join(dir, "img")
	checkpointTo(t, m, pid, img)
	os.Chmod(img, 0o644)
	cmd.Process.Kill()
	cmd.Wait()

	asNobody := func(c *exec.Cmd) { c.SysProcAttr = nobody }
	os.Chmod(secret, 0o600) // root's alone now, the same inode
	r := run(t, cmdTimeout, asNobody, "cp", img, m.path("restore", "denied"))
	outcome, _ := os.ReadFile(m.path("restore", "denied"))
	if r.code == 0 || !strings.Contains(string(outcome), secret) || !strings.Contains(string(outcome), "may not open") {
		t.Errorf("nobody restoring a descriptor of a file it may not read: %s\noutcome %s", r, outcome)
	}
	if taskState(pid, pid) != 0 {
		t.Errorf("pid %d runs after a refused restore", pid)
	}

	os.Chmod(secret, 0o644)
	r = run(t, cmdTimeout, asNobody, "cp", img, m.path("restore", "allowed"))
	if r.code != 0 {
		t.Fatalf("nobody restoring a descriptor of a file it may read: %s", r)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", pid)); err != nil || link != secret {
		t.Errorf("restored fd 3 is %q (%v), want %s", link, err, secret)
	}
}
