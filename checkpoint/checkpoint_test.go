package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

// startTree starts sh with two sleeping children and returns sh's pid once
// both children exist. The whole tree is killed by pid at cleanup.
func startTree(t *testing.T) int {
	t.Helper()
	return startScript(t, "sleep 100 & sleep 100 & wait")
}

// startScript starts sh -c script, which must start two sleeping
// children, as startTree does.
func startScript(t *testing.T, script string) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		kids, _ := procfs.Children(pid)
		for _, k := range kids {
			if p, err := os.FindProcess(k); err == nil {
				p.Kill()
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(5 * time.Second); ; {
		if kids, _ := procfs.Children(pid); len(kids) == 2 && execed(kids, "sleep") {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatal("tree did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// execed reports whether every pid runs the program named comm already
// (a child fresh from fork still has its parent's name).
func execed(pids []int, comm string) bool {
	for _, p := range pids {
		st, err := procfs.ReadStat(p)
		if err != nil || st.Comm != comm {
			return false
		}
	}
	return true
}

func TestCaptureTree(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startTree(t)
	img, res := capture(t, pid, Options{})
	if res.Frozen <= 0 {
		t.Errorf("frozen time %v, want > 0", res.Frozen)
	}
	if img.Header.Mode != image.ModeSubtree {
		t.Errorf("mode %v, want subtree", img.Header.Mode)
	}
	if n := len(img.Tree.Tasks); n != 3 {
		t.Fatalf("%d tasks, want 3", n)
	}
	st, err := procfs.ReadStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	root := img.Pids.Pids[img.Tree.Tasks[0].Pid-1]
	if got, want := int(root.Levels[0].Nr), st.NSpid[len(st.NSpid)-1]; got != want {
		t.Errorf("root pid %d, want %d", got, want)
	}
	for i, task := range img.Tree.Tasks[1:] {
		if task.PPid != img.Tree.Tasks[0].Pid {
			t.Errorf("task %d: ppid tag %d, want the root's %d", i+1, task.PPid, img.Tree.Tasks[0].Pid)
		}
		if img.Tasks[i+1].Comm != "sleep" {
			t.Errorf("task %d: comm %q, want sleep", i+1, img.Tasks[i+1].Comm)
		}
	}
	// The tree runs on: nothing is left stopped or traced.
	for _, p := range append([]int{pid}, mustChildren(t, pid)...) {
		st, err := procfs.ReadStatus(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.TracerPid != 0 || st.State == 't' || st.State == 'T' {
			t.Errorf("pid %d left state %c tracer %d", p, st.State, st.TracerPid)
		}
	}
}

// capture checkpoints pid into memory and decodes the image.
func capture(t *testing.T, pid int, opt Options) (*image.Image, *Result) {
	t.Helper()
	var buf bytes.Buffer
	res, err := Write(context.Background(), &buf, pid, opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != int64(buf.Len()) {
		t.Errorf("result says %d bytes, wrote %d", res.Size, buf.Len())
	}
	img, err := image.ReadImage(&buf)
	if err != nil {
		t.Fatalf("decode own image: %v", err)
	}
	return img, res
}

func mustChildren(t *testing.T, pid int) []int {
	kids, err := procfs.Children(pid)
	if err != nil {
		t.Fatal(err)
	}
	return kids
}

func TestCaptureRefusesSelf(t *testing.T) {
	testenv.NeedRoot(t)
	_, err := Write(context.Background(), io.Discard, os.Getpid(), Options{})
	if !errors.Is(err, ErrSelf) {
		t.Fatalf("checkpoint of ourselves: %v, want ErrSelf", err)
	}
	// An ancestor's subtree holds us too, and nothing of it may be stopped.
	_, err = Write(context.Background(), io.Discard, os.Getppid(), Options{})
	if !errors.Is(err, ErrSelf) {
		t.Fatalf("checkpoint of our parent: %v, want ErrSelf", err)
	}
}

func TestCaptureVanished(t *testing.T) {
	testenv.NeedRoot(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	_, err := Write(context.Background(), io.Discard, cmd.Process.Pid, Options{})
	if !errors.Is(err, ErrVanished) || !strings.Contains(err.Error(), "vanished") {
		t.Fatalf("checkpoint of an exited pid: %v, want ErrVanished", err)
	}
}

func TestContainerModeRefusesNonInit(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startTree(t)
	_, err := Write(context.Background(), io.Discard, pid, Options{Mode: ModeContainer})
	if !errors.Is(err, ErrOutside) {
		t.Fatalf("container checkpoint of a non-init: %v, want ErrOutside", err)
	}
}

func TestCaptureRefusesSeccomp(t *testing.T) {
	testenv.NeedRoot(t)
	// Strict seccomp would kill the task on the brk(0) capture injects: a
	// clear refusal instead, and the task lives on.
	cmd := exec.Command("python3", "-c", `
import ctypes, time, sys
libc = ctypes.CDLL(None)
sys.stdout.write("x"); sys.stdout.flush()
libc.syscall(317, 0, 0, 0)  # seccomp(SECCOMP_SET_MODE_STRICT)
while True: pass
`)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Skip("no python3:", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	out.Read(make([]byte, 1))
	for i := 0; i < 200; i++ {
		if st, err := procfs.ReadStatus(cmd.Process.Pid); err == nil && st.Seccomp != 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Its stdout is a pipe to us: replaced, so that seccomp is what fails.
	_, err := Write(context.Background(), io.Discard, cmd.Process.Pid, Options{ReplaceExternal: true})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "seccomp") {
		t.Fatalf("checkpoint of a seccomp task: %v, want ErrUnsupported naming seccomp", err)
	}
	if st, err := procfs.ReadStatus(cmd.Process.Pid); err != nil || st.State == 't' || st.State == 'Z' {
		t.Fatalf("the task did not survive the refused checkpoint: %v %v", st, err)
	}
}

func TestCaptureRefusesWhatLeadsOutside(t *testing.T) {
	testenv.NeedRoot(t)
	cmd := exec.Command("sleep", "100")
	out, err := cmd.StdoutPipe() // its stdout is a pipe to this process
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(50 * time.Millisecond)
	_, err = Write(context.Background(), io.Discard, cmd.Process.Pid, Options{})
	if !errors.Is(err, ErrExternal) || !strings.Contains(err.Error(), "fd 1 is a pipe") {
		t.Fatalf("checkpoint of a task writing to a pipe outside its tree: %v, want ErrExternal naming fd 1", err)
	}
	// Asked to, it records the descriptor to be replaced instead.
	var buf bytes.Buffer
	if _, err := Write(context.Background(), &buf, cmd.Process.Pid, Options{ReplaceExternal: true}); err != nil {
		t.Fatal(err)
	}
	r := image.NewReader(&buf)
	if _, err := r.NextTask(); err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := r.NextRecord()
		if err != nil {
			t.Fatalf("no FILES record: %v", err)
		}
		if rec.Type != image.RecFiles {
			continue
		}
		fds, err := r.ReadFiles(rec)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fds {
			if f.Num == 1 {
				if f.Kind != image.FileReplaced {
					t.Errorf("fd 1 recorded as kind %d, want replaced", f.Kind)
				}
				return
			}
		}
		t.Fatalf("fd 1 missing from %+v", fds)
	}
}

func TestCaptureRefusesInotify(t *testing.T) {
	testenv.NeedRoot(t)
	cmd := exec.Command("python3", "-c", `
import ctypes, sys, time
ctypes.CDLL(None).inotify_init()
sys.stdout.write("x"); sys.stdout.flush()
time.sleep(100)
`)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Skip("no python3:", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	out.Read(make([]byte, 1))
	// Replacing what leads outside does not make an inotify instance
	// restorable: it is refused by name.
	_, err := Write(context.Background(), io.Discard, cmd.Process.Pid, Options{ReplaceExternal: true})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "inotify") {
		t.Fatalf("checkpoint of a task with an inotify instance: %v, want ErrUnsupported naming inotify", err)
	}
}
