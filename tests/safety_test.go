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

	"golang.org/x/sys/unix"
)

// nobody is the unprivileged user the permission tests run as.
const nobody = 65534

// asUser runs a command as uid/gid with no supplementary groups, from /.
func asUser(uid uint32) func(*exec.Cmd) {
	return func(c *exec.Cmd) {
		c.Dir = "/"
		if c.SysProcAttr == nil {
			c.SysProcAttr = &syscall.SysProcAttr{}
		}
		c.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}
	}
}

// expectFail checks that a read through the mount failed (and did not
// hang, which run reports), with stderr naming one of the reasons.
func expectFail(t *testing.T, r result, reasons ...string) {
	t.Helper()
	if r.timedOut {
		return // already reported
	}
	if r.err == nil {
		t.Errorf("%s: succeeded (%d bytes), want it refused", r.cmd, len(r.stdout))
		return
	}
	msg := strings.ToLower(string(r.stderr))
	for _, reason := range reasons {
		if strings.Contains(msg, strings.ToLower(reason)) {
			return
		}
	}
	t.Errorf("%s: want one of %q", r, reasons)
}

// deadlock is how cat reports EDEADLK.
var deadlock = syscall.EDEADLK.Error()

// TestSelfDeadlock asks for subtrees that hold the caller or the daemon:
// each must fail at once with EDEADLK instead of freezing the caller (the
// classic `cat /mnt/ckpt/$$/image`), and leave nothing stopped.
func TestSelfDeadlock(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "simple", nil)
	wt := readTreeTruth(t, w.root)

	t.Run("shell-reads-itself", func(t *testing.T) {
		r := run(t, cmdTimeout, nil, "sh", "-c", fmt.Sprintf("cat %s/$$/image; st=$?; echo done >&2; exit $st", m.dir))
		expectFail(t, r, deadlock)
	})
	t.Run("shell-stats-itself", func(t *testing.T) {
		// ls -l stats every file: no stat may freeze the caller either.
		r := run(t, cmdTimeout, nil, "sh", "-c", fmt.Sprintf("ls -l %s/$$/ >/dev/null; cat %s/$$/pids", m.dir, m.dir))
		expectFail(t, r, deadlock)
	})
	t.Run("daemon", func(t *testing.T) {
		for _, name := range []string{"image", "pids", "tree"} {
			expectFail(t, run(t, cmdTimeout, nil, "cat", m.path(m.pid, name)), deadlock)
		}
	})
	t.Run("test-process", func(t *testing.T) {
		// The test's subtree holds both the caller (cat) and the daemon.
		expectFail(t, run(t, cmdTimeout, nil, "cat", m.path(os.Getpid(), "image")), deadlock)
	})
	t.Run("ancestor", func(t *testing.T) {
		ppid := os.Getppid()
		expectFail(t, run(t, cmdTimeout, nil, "cat", m.path(ppid, "image")), deadlock)
		var tasks []taskID
		for _, tid := range threads(ppid) {
			tasks = append(tasks, taskID{ppid, tid})
		}
		assertRunning(t, "the test's parent", tasks)
	})
	t.Run("still-serving", func(t *testing.T) {
		// Nothing above left the daemon stuck, and the workload reads.
		p := filepath.Join(t.TempDir(), "image")
		if err := os.WriteFile(p, mustRun(t, "cat", m.path(w.root, "image")), 0o600); err != nil {
			t.Fatal(err)
		}
		verifyImage(t, "after the refusals", inspect(t, p), readTreeTruth(t, w.root), "subtree")
	})
	var self []taskID
	for _, tid := range threads(os.Getpid()) {
		self = append(self, taskID{os.Getpid(), tid})
	}
	assertRunning(t, "the test process", self)
	assertRunning(t, "the workload", wt.ids())
}

// TestPermissions mounts with --allow-other and reads as an unprivileged
// user: it may enter the mount and read its own processes, but not a
// root-owned process's subtree (EACCES: it could not ptrace it).
func TestPermissions(t *testing.T) {
	requireEnv(t)
	m := testMount(t, "--allow-other")
	w := startWorkload(t, "simple", nil)
	wt := readTreeTruth(t, w.root)

	t.Run("enter", func(t *testing.T) {
		r := run(t, cmdTimeout, asUser(nobody), "ls", m.dir)
		if r.err != nil {
			t.Fatalf("nobody cannot list the mount (is --allow-other in effect?): %s", r)
		}
		if !strings.Contains(" "+strings.Join(strings.Fields(string(r.stdout)), " ")+" ", " "+strconv.Itoa(w.root)+" ") {
			t.Errorf("nobody's ls does not show %d", w.root)
		}
	})
	t.Run("root-owned", func(t *testing.T) {
		for _, name := range []string{"image", "pids", "tree"} {
			expectFail(t, run(t, cmdTimeout, asUser(nobody), "cat", m.path(w.root, name)), syscall.EACCES.Error())
		}
		// The refusal is for nobody only: root still reads it.
		mustRun(t, "cat", m.path(w.root, "image"))
	})
	t.Run("own", func(t *testing.T) {
		if b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil && strings.TrimSpace(string(b)) != "0" {
			t.Skipf("Yama ptrace_scope is %s: an unprivileged user may not ptrace a non-descendant", strings.TrimSpace(string(b)))
		}
		own := startWorkload(t, "simple", asUser(nobody))
		ot := readTreeTruth(t, own.root)
		r := run(t, cmdTimeout, asUser(nobody), "cat", m.path(own.root, "image"))
		if r.err != nil {
			t.Fatalf("nobody cannot read its own process's image: %s", r)
		}
		verifyImage(t, "nobody's own image", inspectBytes(t, "own.img", r.stdout), ot, "subtree")
		assertRunning(t, "nobody's workload", ot.ids())
	})
	assertRunning(t, "the root-owned workload", wt.ids())
}

// TestVanished reads the directory of a process that has exited: an error,
// never a hang, and the daemon keeps serving.
func TestVanished(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	t.Run("known-then-killed", func(t *testing.T) {
		w := startWorkload(t, "simple", nil)
		// The kernel has looked the directory up; no file was used.
		if _, err := os.Stat(m.path(w.root)); err != nil {
			t.Fatal(err)
		}
		killTree(t, w.cmd.Process.Pid)
		w.cmd.Wait()
		for _, name := range []string{"image", "pids", "tree"} {
			expectFail(t, run(t, cmdTimeout, nil, "cat", m.path(w.root, name)),
				syscall.ESRCH.Error(), syscall.ENOENT.Error())
		}
	})
	t.Run("snapshot-expired", func(t *testing.T) {
		w := startWorkload(t, "simple", nil)
		mustRun(t, "cat", m.path(w.root, "image"))
		killTree(t, w.cmd.Process.Pid)
		w.cmd.Wait()
		time.Sleep(graceWait)
		expectFail(t, run(t, cmdTimeout, nil, "cat", m.path(w.root, "image")),
			syscall.ESRCH.Error(), syscall.ENOENT.Error())
	})
	t.Run("never-seen", func(t *testing.T) {
		w := startWorkload(t, "simple", nil)
		killTree(t, w.cmd.Process.Pid)
		w.cmd.Wait()
		expectFail(t, run(t, cmdTimeout, nil, "cat", m.path(w.root, "image")),
			syscall.ESRCH.Error(), syscall.ENOENT.Error())
		checkCLIError(t, ckptfs(t, "checkpoint", strconv.Itoa(w.root), "-o", filepath.Join(t.TempDir(), "img")))
	})
	t.Run("still-serving", func(t *testing.T) {
		w := startWorkload(t, "simple", nil)
		tt := readTreeTruth(t, w.root)
		p := filepath.Join(t.TempDir(), "image")
		if err := os.WriteFile(p, mustRun(t, "cat", m.path(w.root, "image")), 0o600); err != nil {
			t.Fatal(err)
		}
		verifyImage(t, "after vanished pids", inspect(t, p), tt, "subtree")
	})
}

// TestChurn checkpoints a tree that forks and reaps children all the time:
// each attempt must either produce a valid image holding the stable part of
// the tree or fail with a message — never hang — and the tree must be left
// running.
func TestChurn(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "churn", nil)
	ok := 0
	for i := range 8 {
		f := filepath.Join(t.TempDir(), fmt.Sprintf("churn%d.img", i))
		r := ckptfs(t, "checkpoint", strconv.Itoa(w.root), "-o", f)
		if r.err != nil {
			checkCLIError(t, r)
			t.Logf("attempt %d refused: %s", i, strings.TrimSpace(string(r.stderr)))
			continue
		}
		ok++
		rep := inspect(t, f)
		comms := map[string]bool{}
		for _, task := range rep.Tasks {
			if task.Comm != nil {
				comms[*task.Comm] = true
			}
		}
		if !comms["forest"] || !comms["ch-stable"] {
			t.Errorf("attempt %d: the image lacks the stable tasks: %v", i, comms)
		}
		assertRunning(t, "the churning tree", subtree(w.root))
	}
	if ok == 0 {
		t.Errorf("no checkpoint of the churning tree succeeded in 8 attempts")
	}
	r := run(t, cmdTimeout, nil, "cat", m.path(w.root, "image"))
	if r.err != nil {
		checkCLIError(t, r)
	} else {
		inspectBytes(t, "mount.img", r.stdout)
	}
	assertRunning(t, "the churning tree", subtree(w.root))
	if s := taskState(w.root, w.root); s == 0 || s == 'Z' {
		t.Errorf("the churning root is gone or dead (state %q)", s)
	}
}

// TestFailedCheckpointOutput: a checkpoint that fails removes the partial
// image it wrote to a regular file, and never the device, FIFO or other
// non-regular file it was told to write to. `ckptfs checkpoint -o
// /dev/null` of a vanished process once removed /dev/null, and the next
// shell redirection made a regular file of it.
func TestFailedCheckpointOutput(t *testing.T) {
	requireEnv(t)
	w := startWorkload(t, "simple", nil)
	gone := w.root
	killTree(t, w.cmd.Process.Pid)
	w.cmd.Wait()

	dir := t.TempDir()
	null := filepath.Join(dir, "null")
	if err := syscall.Mknod(null, syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod %s: %v", null, err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "image")
	for _, out := range []string{null, regular} {
		checkCLIError(t, ckptfs(t, "checkpoint", strconv.Itoa(gone), "-o", out))
	}
	if fi, err := os.Lstat(null); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("after a failed checkpoint to %s: %v %v, want the character device kept", null, fi, err)
	}
	if _, err := os.Lstat(regular); !os.IsNotExist(err) {
		t.Errorf("a failed checkpoint left its partial image %s behind (%v)", regular, err)
	}
	// A FIFO with no reader would block the open: give it one.
	rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	checkCLIError(t, ckptfs(t, "checkpoint", strconv.Itoa(gone), "-o", fifo))
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("after a failed checkpoint to %s: %v %v, want the FIFO kept", fifo, fi, err)
	}
}

// TestVfork: a process in vfork waits uninterruptibly for its child to
// exec or exit, and can never stop for a freeze; its child shares its
// memory. Checkpointing either, or a tree holding them, is refused at once
// with EAGAIN, naming vfork, instead of waiting for a stop that cannot come;
// the tree is left as it was.
func TestVfork(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "vfork", nil)
	parent, child := w.key(t, "parent"), w.key(t, "child")
	for _, pid := range []int{parent, child, w.root} {
		r := run(t, cmdTimeout, nil, "cat", m.path(pid, "image"))
		expectFail(t, r, syscall.EAGAIN.Error())
		if !strings.Contains(m.log(), "vfork") {
			t.Errorf("cat of %d: the daemon's log does not say vfork:\n%s", pid, m.log())
		}
		r = ckptfs(t, "checkpoint", strconv.Itoa(pid), "-o", filepath.Join(t.TempDir(), "img"))
		checkCLIError(t, r)
		if !strings.Contains(string(r.stderr), "vfork") {
			t.Errorf("ckptfs checkpoint %d: %q does not say vfork", pid, r.stderr)
		}
	}
	if s := taskState(parent, parent); s != 'D' {
		t.Errorf("the vfork parent is in state %c, want D (still waiting for its child)", s)
	}
	assertRunning(t, "the vfork tree", subtree(w.root))
}
