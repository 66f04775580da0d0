package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// receiverEnv turns the test binary into a migration's receiving end:
// "PATH" names the file to write; it listens on the loopback interface,
// prints "LISTEN <addr>", copies one connection into the file, closes it
// (which runs the restore) and prints the file's contents.
const receiverEnv = "CKPTFS_TEST_RECEIVER"

// receive is the receiving end (see receiverEnv); its exit status is 0
// when the write and the close succeeded.
func receive(path string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	fmt.Printf("LISTEN %s\n", ln.Addr())
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(cmdTimeout))
	conn, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, "accept:", err)
		return 1
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n, err := io.Copy(f, conn)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "after %d bytes: %v\n", n, err)
		return 1
	}
	out, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Stdout.Write(out)
	return 0
}

// TestMigrateOverTCP moves a container to "another machine" the way a user
// would with tools over files: its image is read from the first mount and
// streamed over a TCP connection into the restore/ of a second daemon,
// which runs in a mount namespace of its own (as a second host would),
// while the original keeps running. The copy must run with the same pids
// inside its own pid namespace.
func TestMigrateOverTCP(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "container", nil)
	orig := subtree(w.root)

	// The second host: a daemon whose mount only its own mount
	// namespace sees.
	dir2 := filepath.Join(t.TempDir(), "m2")
	if err := os.Mkdir(dir2, 0o755); err != nil {
		t.Fatal(err)
	}
	d2 := exec.Command("unshare", "--mount", "--propagation", "private", env.bin, "mount", dir2)
	logw := &lineLogger{t: t, prefix: "second daemon: "}
	d2.Stdout, d2.Stderr = logw, logw
	d2.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d2.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// unshare execs the daemon, which unmounts on SIGTERM; its mount
		// namespace, and the mount in it, die with it anyway.
		d2.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d2.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(stopTimeout):
			t.Errorf("the second daemon did not stop within %v of SIGTERM", stopTimeout)
			d2.Process.Kill()
			<-done
		}
		logw.flush()
	})
	waitMountIn(t, d2.Process.Pid, dir2)
	if mounted(dir2) {
		t.Fatalf("the second daemon's mount %s is visible outside its mount namespace", dir2)
	}

	// The receiver, in the second host's mount namespace.
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	recv := exec.CommandContext(ctx, "nsenter", "--target", fmt.Sprint(d2.Process.Pid), "--mount", "--", self)
	recv.Env = append(os.Environ(), receiverEnv+"="+filepath.Join(dir2, "restore", "moved"))
	stdout, err := recv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	recv.Stderr = &stderr
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	first, err := lines.ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(first), "LISTEN ")
	if err != nil || !ok {
		t.Fatalf("the receiver said %q (%v), want LISTEN <addr>; stderr: %s", first, err, stderr.String())
	}

	// The sender: the image, straight from the first mount to the socket.
	img, err := os.Open(m.path(w.root, "image"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(conn, img)
	img.Close()
	conn.Close()
	if err != nil {
		t.Fatalf("sending the image after %d bytes: %v", n, err)
	}
	status, _ := io.ReadAll(lines)
	if err := recv.Wait(); err != nil {
		t.Fatalf("the receiver: %v; stderr: %s", err, stderr.String())
	}
	var out outcome
	if err := json.Unmarshal(status, &out); err != nil || out.State != "running" {
		t.Fatalf("the second host's restore: %s (%v)", status, err)
	}
	t.Cleanup(func() {
		killTree(t, out.Seed)
		syscall.Kill(out.Seed, syscall.SIGKILL)
	})
	t.Logf("moved %d bytes; the copy's init is host pid %d", n, out.Root)

	// The copy: the same pids inside a pid namespace of its own.
	for _, task := range out.Tasks {
		st, err := procfs.ReadStatus(task.Host)
		if err != nil {
			t.Errorf("restored task %v: %v", task.Now, err)
			continue
		}
		inner := st.NSpid[len(st.NSpid)-len(task.Image):]
		want := make([]int, len(task.Image))
		copy(want, task.Image)
		if !slices.Equal(inner, want) {
			t.Errorf("restored task: pids %v inside its namespaces, want %v", inner, task.Image)
		}
	}
	if ns1, ns2 := nsOf(t, w.root), nsOf(t, out.Root); ns1 == ns2 {
		t.Errorf("the copy's init shares the original's pid namespace %s", ns1)
	}
	// And the original runs on, untouched.
	assertRunning(t, "the original container", orig)
	for _, tk := range orig {
		if taskState(tk.tgid, tk.tid) == 0 {
			t.Errorf("task %d of the original is gone", tk.tid)
		}
	}
}

// waitMountIn waits until the mount namespace of pid shows a mount at dir.
func waitMountIn(t *testing.T, pid int, dir string) {
	t.Helper()
	for deadline := time.Now().Add(mountTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
		for line := range strings.SplitSeq(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 4 && unescapeMountinfo(f[4]) == dir {
				return
			}
		}
	}
	t.Fatalf("no mount at %s in the mount namespace of %d within %v", dir, pid, mountTimeout)
}

// nsOf names the pid namespace process pid lives in.
func nsOf(t *testing.T, pid int) string {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
