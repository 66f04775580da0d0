package tests

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
)

// Refusals: a tree holding something ckptfs cannot bring back faithfully is
// refused with an error naming the task and the object — through the mount
// (the reader gets an errno, the daemon's log says why) and on the command
// line — instead of an image that would restore wrongly. Each refusal
// leaves the tree running, and leaves nothing behind: asking again gives
// the same answer. (Seccomp, inotify and a pipe leading out are covered in
// checkpoint/checkpoint_test.go; unix socket pairs, FIFOs, deleted files
// and memfds by their own tests.) The objects come from workload/objects.c.

// TestUnsupportedObjects: one process holds one object of a kind ckptfs
// does not capture.
func TestUnsupportedObjects(t *testing.T) {
	requireEnv(t)
	bin := buildWorkload(t, "objects")
	m, logs := testMountLogged(t)
	for _, kind := range []string{"io_uring", "signalfd", "timerfd", "userfaultfd", "pidfd", "fanotify", "perf_event"} {
		t.Run(kind, func(t *testing.T) {
			w := startObjects(t, bin, kind)
			fd := w.key(t, "fd")
			object := fmt.Sprintf("fd %d is anon_inode:[%s]", fd, kind)
			if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", w.root, fd)); got != "anon_inode:["+kind+"]" {
				t.Fatalf("the workload's fd %d is %q, want anon_inode:[%s]", fd, got, kind)
			}
			checkRefused(t, m, logs, w.root, unix.EOPNOTSUPP, fmt.Sprintf("pid %d: ", w.root), object, "not supported")
		})
	}
}

// TestTracedTaskRefused: a task that another process traces (a debugger,
// strace) cannot be frozen; the refusal names it and its tracer, and comes
// before any task of the tree is stopped.
func TestTracedTaskRefused(t *testing.T) {
	requireEnv(t)
	bin := buildWorkload(t, "objects")
	m, logs := testMountLogged(t)
	w := startObjects(t, bin, "traced")
	child := w.key(t, "child")
	tracer := startObjects(t, bin, "tracer", strconv.Itoa(child)).root
	if got := tracerOf(t, child); got != tracer {
		t.Fatalf("TracerPid of %d is %d, want the tracer %d", child, got, tracer)
	}
	checkRefused(t, m, logs, w.root, unix.EBUSY,
		fmt.Sprintf("pid %d: freeze: traced by pid %d", child, tracer), "already traced")
	// The tracer still holds it: nothing of ckptfs got in the way.
	if got := tracerOf(t, child); got != tracer {
		t.Errorf("after the refusals, TracerPid of %d is %d, want %d", child, got, tracer)
	}
}

// TestInetSocketsLeadOut: an inet socket leads outside the tree (anyone may
// connect to a listener, or send to a bound datagram socket): recorded, by
// default, to be replaced by /dev/null at restore, and refused as external
// with --external=refuse, through the mount and on the command line alike.
func TestInetSocketsLeadOut(t *testing.T) {
	requireEnv(t)
	bin := buildWorkload(t, "objects")
	m, logs := testMountLogged(t, "--external=refuse")
	replacing := testMount(t)
	for _, kind := range []string{"tcp", "udp"} {
		t.Run(kind, func(t *testing.T) {
			w := startObjects(t, bin, kind)
			fd := w.key(t, "fd")
			target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", w.root, fd))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				t.Fatalf("the workload's fd %d is %q (%v), want a socket", fd, target, err)
			}
			object := fmt.Sprintf("fd %d is a socket, not a unix one (%s)", fd, target)
			checkRefused(t, m, logs, w.root, unix.EOPNOTSUPP, fmt.Sprintf("pid %d: ", w.root), object, "leads outside the tree")

			img := filepath.Join(t.TempDir(), "img")
			if r := ckptfs(t, "checkpoint", strconv.Itoa(w.root), "-o", img); r.code != 0 {
				t.Fatalf("checkpoint (external descriptors replaced by default): %s", r)
			}
			checkReplaced(t, img, fd, target)
			assertRunning(t, "after checkpoint", subtree(w.root))

			if r := run(t, cmdTimeout, nil, "cp", replacing.path(w.root, "image"), img); r.code != 0 {
				t.Fatalf("read through a mount with its default --external=replace: %s", r)
			}
			checkReplaced(t, img, fd, target)
			assertRunning(t, "after a read through the replacing mount", subtree(w.root))
		})
	}
}

// checkRefused checks that the tree rooted at root is refused, twice
// through the mount and once by `ckptfs checkpoint`, with errno for the
// reader and a message holding every one of want (on one line) for the
// daemon's log and the command's stderr; and that every task of the tree
// is left running after each attempt.
func checkRefused(t *testing.T, m *mount, logs *logTap, root int, errno unix.Errno, want ...string) {
	t.Helper()
	tasks := subtree(root)
	if len(tasks) == 0 {
		t.Fatalf("the workload %d is gone", root)
	}
	path := m.path(root, "image")
	for attempt := 1; attempt <= 2; attempt++ {
		before := logs.count(want...)
		r := run(t, cmdTimeout, nil, "cat", path)
		if r.code == 0 || !strings.Contains(strings.ToLower(string(r.stderr)), errno.Error()) {
			t.Errorf("read %d of %s: %s\nwant a failure with %q", attempt, path, r, errno.Error())
		}
		if !logs.await(before+1, want...) {
			t.Errorf("read %d of %s: the daemon logged no line holding %q; it logged:\n%s",
				attempt, path, want, logs.tail(10))
		}
		assertRunning(t, fmt.Sprintf("after read %d of %s", attempt, path), tasks)
	}

	img := filepath.Join(t.TempDir(), "img")
	r := ckptfs(t, "checkpoint", "--external=refuse", strconv.Itoa(root), "-o", img)
	if r.code == 0 || !containsAll(string(r.stderr), want) {
		t.Errorf("%s\nwant a failure whose message holds %q", r, want)
	}
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("a refused checkpoint left %s behind (%v)", img, err)
	}
	assertRunning(t, "after ckptfs checkpoint", tasks)
}

// checkReplaced checks that the image's first task (the root) records its
// descriptor fd, which was target, as replaced.
func checkReplaced(t *testing.T, img string, fd int, target string) {
	t.Helper()
	d := fdRecord(t, img, fd)
	if d.Kind != image.FileReplaced || d.Path != target || d.ExternalKind() != image.ExternalSocket {
		t.Errorf("%s: fd %d is recorded as kind %d, path %q, external %v; want replaced (%d), %q, a socket",
			img, fd, d.Kind, d.Path, d.Extra, image.FileReplaced, target)
	}
}

// fdRecord returns descriptor fd of the root task of image img.
func fdRecord(t *testing.T, img string, fd int) image.FD {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := image.NewReader(bufio.NewReader(f))
	if _, err := r.NextTask(); err != nil {
		t.Fatalf("%s: first task: %v", img, err)
	}
	for {
		rec, err := r.NextRecord()
		if err == io.EOF {
			t.Fatalf("%s: the root has no FILES record", img)
		}
		if err != nil {
			t.Fatalf("%s: %v", img, err)
		}
		if rec.Type != image.RecFiles {
			continue
		}
		fds, err := r.ReadFiles(rec)
		if err != nil {
			t.Fatalf("%s: FILES: %v", img, err)
		}
		for _, d := range fds {
			if int(d.Num) == fd {
				return d
			}
		}
		t.Fatalf("%s: the root's FILES record has no fd %d: %+v", img, fd, fds)
	}
}

// tracerOf returns the TracerPid of process pid.
func tracerOf(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("/proc/%d/status: %q", pid, line)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no TracerPid", pid)
	return 0
}

// startObjects runs `objects ARGS...` with its output in a file of its own
// (a regular file, which a checkpoint takes as it is, unlike a pipe to this
// test), waits for its READY line and arranges for its tree to be killed,
// by pid, and reaped when the test ends. A SKIP line (the kernel does not
// give this process such an object) skips the test with its reason.
func startObjects(t *testing.T, bin string, args ...string) *workload {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	name := "objects " + strings.Join(args, " ")
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		killTree(t, pid)
		cmd.Process.Kill()
		<-exited
	})

	deadline := time.Now().Add(readyTimeout)
	for {
		data, _ := os.ReadFile(out)
		for line := range strings.SplitSeq(string(data), "\n") {
			if why, ok := strings.CutPrefix(line, "SKIP "); ok {
				t.Skipf("%s: the kernel refuses this process the object: %s", name, why)
			}
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "READY" {
				w := &workload{scenario: name, extra: map[string]int{}, cmd: cmd}
				if w.root, err = strconv.Atoi(f[1]); err != nil || w.root != pid {
					t.Fatalf("%s (pid %d): bad READY line %q", name, pid, line)
				}
				for _, kv := range f[2:] {
					k, v, _ := strings.Cut(kv, "=")
					if w.extra[k], err = strconv.Atoi(v); err != nil {
						t.Fatalf("%s: bad READY word %q", name, kv)
					}
				}
				t.Logf("%s: %s", name, line)
				return w
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited without READY: %s\n%s", name, cmd.ProcessState, data)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s printed no READY line within %v:\n%s", name, readyTimeout, data)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logTap is the testing.TB a mount is started with to keep what its daemon
// logs (testMount sends the daemon's output to the TB's Logf, line by
// line), so that a test can check why a read was refused.
type logTap struct {
	*testing.T
	mu    sync.Mutex
	lines []string
}

func (l *logTap) Logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.T.Logf("%s", line)
}

// testMountLogged is testMount whose daemon's log is kept.
func testMountLogged(t *testing.T, extra ...string) (*mount, *logTap) {
	t.Helper()
	logs := &logTap{T: t}
	return testMount(logs, extra...), logs
}

// count is how many lines logged so far hold every one of want.
func (l *logTap) count(want ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if containsAll(line, want) {
			n++
		}
	}
	return n
}

// await waits a moment (the daemon's output comes through a pipe) for at
// least n lines holding every one of want.
func (l *logTap) await(n int, want ...string) bool {
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if l.count(want...) >= n {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// tail returns the last n lines logged.
func (l *logTap) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-n):], "\n")
}

func containsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
