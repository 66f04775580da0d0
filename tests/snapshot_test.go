package tests

import (
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

// stoppedTasks lists the tasks of tasks in a ptrace stop.
func stoppedTasks(tasks []taskID) []taskID {
	var out []taskID
	for _, tk := range tasks {
		if taskState(tk.tgid, tk.tid) == 't' {
			out = append(out, tk)
		}
	}
	return out
}

// TestSnapshotFreeze follows a snapshot's tree with copies off
// (--cow-limit=0): frozen while its image is open (its pages are read from
// the frozen processes), running again as soon as the image is read
// through and closed, and let go at once, with reads failing (EIO), when
// one of its processes is killed meanwhile.
func TestSnapshotFreeze(t *testing.T) {
	requireEnv(t)
	m := testMount(t, holdArgs()...)

	t.Run("frozen-while-read", func(t *testing.T) {
		w := startWorkload(t, "simple", nil)
		tasks := subtree(w.root)
		f, err := os.Open(m.path(w.root, "image"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if got := stoppedTasks(tasks); len(got) != len(tasks) {
			t.Errorf("with the image open, %d of the tree's %d tasks are frozen", len(got), len(tasks))
		}
		inspectBytes(t, "image", readAll(t, f))
		f.Close()
		// Read through and closed: the tree runs on without waiting for
		// the grace period.
		deadline := time.Now().Add(500 * time.Millisecond)
		for len(stoppedTasks(tasks)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("still frozen %v after the image was read and closed: %v", 500*time.Millisecond, stoppedTasks(tasks))
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	t.Run("killed-while-frozen", func(t *testing.T) {
		w := startWorkload(t, "simple", nil)
		tasks := subtree(w.root)
		f, err := os.Open(m.path(w.root, "image"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		victim := tasks[len(tasks)-1].tgid // the grandchild
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(f)
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("reading the image of a tree with a killed process: %v, want EIO", err)
		}
		var rest []taskID
		for _, tk := range tasks {
			if tk.tgid != victim {
				rest = append(rest, tk)
			}
		}
		// Let go at once, the image still open.
		deadline := time.Now().Add(500 * time.Millisecond)
		for len(stoppedTasks(rest)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("still frozen with a process of the tree killed: %v", stoppedTasks(rest))
			}
			time.Sleep(5 * time.Millisecond)
		}
		f.Close()
		// The next use is a new snapshot, of what is left.
		inspectBytes(t, "after", mustRun(t, "cat", m.path(w.root, "image")))
	})

	t.Run("nested-directories", func(t *testing.T) {
		// A stat freezes the tree for the grace period; a child's
		// directory read meanwhile lets that unused snapshot go instead
		// of failing on a tree already traced.
		w := startWorkload(t, "simple", nil)
		tasks := subtree(w.root)
		if _, err := os.Stat(m.path(w.root, "image")); err != nil {
			t.Fatal(err)
		}
		child := tasks[1].tgid
		inspectBytes(t, "child", mustRun(t, "cat", m.path(child, "image")))
		assertRunning(t, "after both", tasks)
	})
}

// TestSnapshotRunsOn: by default a snapshot's tree runs on as soon as it
// is laid out, its pages copied, while the image is open and read; a
// process of it killed meanwhile changes nothing in the image, which is
// the tree's at the instant of the freeze.
func TestSnapshotRunsOn(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "simple", nil)
	tasks := subtree(w.root)
	f, err := os.Open(m.path(w.root, "image"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	assertRunning(t, "with its image open", tasks)
	victim := tasks[len(tasks)-1].tgid // the grandchild
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rep := inspectBytes(t, "image", readAll(t, f))
	if len(rep.Tasks) != len(tasks) {
		t.Errorf("the image read after a kill holds %d tasks, the tree had %d at the freeze", len(rep.Tasks), len(tasks))
	}
}
