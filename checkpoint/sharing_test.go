package checkpoint

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

// sharingScript builds a small tree whose processes share descriptor
// tables and fs structs as argv[1] says, through raw clone(2) from python
// (ctypes), and prints "pids" and every pid it made, then "ready".
//
//	shared    P clones A with CLONE_FILES|CLONE_FS, A clones B with
//	          CLONE_FILES; P forks C (shares nothing)
//	thread    P runs a thread that unshares its descriptor table
//	sibling   P forks A; A clones B with CLONE_PARENT|CLONE_FILES: B is
//	          P's child but shares A's table
//	root      P clones R with CLONE_FS; R is checkpointed alone
const sharingScript = `
import ctypes, os, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
FS, FILES, PARENT, SIGCHLD = 0x200, 0x400, 0x8000, 17
def clone(flags):
    pid = libc.syscall(56, flags, 0, 0, 0, 0)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone")
    return pid
def rest():
    while True:
        time.sleep(100)
pids = []
mode = sys.argv[1]
if mode == "shared":
    a = clone(FILES | FS | SIGCHLD)
    if a == 0:
        if clone(FILES | SIGCHLD) == 0:
            rest()
        rest()
    pids.append(a)
    if os.fork() == 0:
        rest()
elif mode == "thread":
    go = threading.Event()
    def own():
        libc.unshare(FILES)
        go.set()
        rest()
    threading.Thread(target=own, daemon=True).start()
    go.wait()
elif mode == "sibling":
    r, w = os.pipe()
    a = os.fork()
    if a == 0:
        os.close(r)
        b = clone(PARENT | FILES)
        if b == 0:
            rest()
        os.write(w, b"%d\n" % b)
        rest()
    os.close(w)
    pids += [a, int(os.read(r, 64))]
    os.close(r)
elif mode == "root":
    if clone(FS | SIGCHLD) == 0:
        rest()
print("pids", *pids, flush=True)
rest()
`

// startSharing runs the script in mode and returns its pid once its tree
// has n processes; every process of it is killed by pid at cleanup.
func startSharing(t *testing.T, mode string, n int) int {
	t.Helper()
	cmd := exec.Command("python3", "-c", sharingScript, mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skip("no python3:", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		for _, p := range treePids(pid) {
			unix.Kill(p, unix.SIGKILL)
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "pids") {
		t.Fatalf("workload %s: %q, %v", mode, line, err)
	}
	for deadline := time.Now().Add(5 * time.Second); len(treePids(pid)) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("workload %s: tree has %v, want %d processes", mode, treePids(pid), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the last of them go to sleep
	return pid
}

// treePids lists pid and its descendants.
func treePids(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		kids, _ := procfs.Children(out[i])
		out = append(out, kids...)
	}
	return out
}

func TestSharingRecorded(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startSharing(t, "shared", 4)
	img, _ := capture(t, pid, Options{ReplaceExternal: true})
	got := map[int32]image.TaskFlags{}
	for _, task := range img.Tree.Tasks {
		if task.TGid == task.Pid {
			got[img.Pids.Pids[task.Pid-1].Levels[0].Nr] = task.Flags
		}
	}
	tree := treePids(pid)
	a := mustChildren(t, pid)
	if len(a) != 2 || len(got) != 4 {
		t.Fatalf("tree %v, image %v", tree, got)
	}
	b := mustChildren(t, a[0])
	if len(b) != 1 {
		t.Fatalf("A %d has children %v, want one", a[0], b)
	}
	want := map[int32]image.TaskFlags{
		int32(pid):  0,
		int32(a[0]): image.TaskSharesFiles | image.TaskSharesFS,
		int32(b[0]): image.TaskSharesFiles,
		int32(a[1]): 0,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("flags by pid %v, want %v", got, want)
	}
}

func TestSharingRefused(t *testing.T) {
	testenv.NeedRoot(t)
	for _, c := range []struct {
		mode  string
		n     int
		want  func(pid int) []string
		alone func(pid int) int // the root to checkpoint
	}{{
		mode: "thread", n: 1,
		want: func(pid int) []string {
			tids, _ := procfs.Threads(pid)
			var thread int
			for _, tid := range tids {
				if tid != pid {
					thread = tid
				}
			}
			return []string{fmt.Sprintf("thread %d has a descriptor table of its own, not its leader %d's", thread, pid)}
		},
	}, {
		mode: "sibling", n: 3,
		want: func(pid int) []string {
			kids, _ := procfs.Children(pid)
			if len(kids) != 2 {
				return []string{fmt.Sprintf("two children of %d, found %v", pid, kids)}
			}
			return []string{fmt.Sprintf("pid %d:", kids[1]), fmt.Sprintf("descriptor table is shared with pid %d, which is neither its parent", kids[0])}
		},
	}, {
		mode: "root", n: 2,
		alone: func(pid int) int { return treePids(pid)[1] },
		want: func(pid int) []string {
			return []string{fmt.Sprintf("the root shares its fs struct with its parent %d", pid)}
		},
	}} {
		t.Run(c.mode, func(t *testing.T) {
			pid := startSharing(t, c.mode, c.n)
			root := pid
			if c.alone != nil {
				root = c.alone(pid)
			}
			_, err := Write(context.Background(), io.Discard, root, Options{ReplaceExternal: true})
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("checkpoint of %d: %v, want ErrUnsupported", root, err)
			}
			t.Logf("refused: %v", err)
			for _, w := range c.want(pid) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, p := range treePids(pid) {
				if st, err := procfs.ReadStatus(p); err != nil || st.State == 't' || st.State == 'Z' {
					t.Errorf("pid %d did not survive the refused checkpoint: %+v %v", p, st, err)
				}
			}
		})
	}
}
