package inject

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/ptrace"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

// TestFork: a guarded task forks a copy whose memory is the process's
// (but for the guard's area, which Copy says what it held), which stays
// stopped, and which, once ended, the process itself reaps as a clone
// child; the process runs on as it was.
func TestFork(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startVictim(t, []string{"sleep", "1000"}, true)
	var c *Copy
	var err error
	var stack procfs.Mapping
	onTracer(func() {
		if err = seizeStopped(pid); err != nil {
			return
		}
		defer ptrace.Detach(pid, 0)
		var sp *Space
		if sp, err = NewSpace(pid); err != nil {
			return
		}
		stack = sp.stack
		var task *Task
		if task, err = GuardFork(sp, pid); err != nil {
			return
		}
		c, err = task.Fork()
		if rerr := task.Restore(); err == nil {
			err = rerr
		}
		if err != nil {
			return
		}
		defer EndCopy(c)
		// The copy's stack is the process's, but for the area.
		want := make([]byte, stack.End-stack.Start)
		got := make([]byte, len(want))
		if err = ReadMem(pid, stack.Start, want); err != nil {
			return
		}
		if err = ReadMem(c.Tid, stack.Start, got); err != nil {
			return
		}
		copy(got[c.Scratch-stack.Start:], c.Saved)
		if !bytes.Equal(got, want) {
			err = fmt.Errorf("the copy's stack differs from the process's")
			return
		}
		st, serr := procfs.ReadStatus(c.Tid)
		if serr != nil || st.State != 't' || st.PPid != pid {
			err = fmt.Errorf("copy %d: %+v, %v; want stopped, child of %d", c.Tid, st, serr, pid)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	checkRunsOn(t, pid)
	// Ended, the copy is the process's zombie, for it to reap with __WALL.
	waitState(t, c.Tid, 'Z')
	onTracer(func() {
		if err = seizeStopped(pid); err != nil {
			return
		}
		defer ptrace.Detach(pid, 0)
		var sp *Space
		if sp, err = NewSpace(pid); err != nil {
			return
		}
		var task *Task
		if task, err = Guard(sp, pid); err != nil {
			return
		}
		var got uint64
		got, err = task.Syscall(unix.SYS_WAIT4, uint64(c.Local), 0, unix.WALL, 0)
		if rerr := task.Restore(); err == nil {
			err = rerr
		}
		if err == nil && int(got) != c.Local {
			err = fmt.Errorf("wait4 in the process reaped %d, want %d", got, c.Local)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := procfs.ReadStat(c.Tid); err == nil {
		t.Errorf("copy %d still exists after its parent reaped it", c.Tid)
	}
	checkRunsOn(t, pid)
}

// TestForkSurvivesTracerDeath lets the tracer die at every instant of a
// fork: the process runs on as it was, and a copy, if one was made, exits
// with CopyExit without running any of the program's code.
func TestForkSurvivesTracerDeath(t *testing.T) {
	testenv.NeedRoot(t)
	for _, at := range append(guardPoints, "fork-forked", "fork-stopped") {
		t.Run(at, func(t *testing.T) {
			pid := startVictim(t, []string{"sleep", "1000"}, true)
			before := dieAt(t, pid, at, func(pid int) error {
				sp, err := NewSpace(pid)
				if err != nil {
					return err
				}
				task, err := GuardFork(sp, pid)
				if err != nil {
					return err
				}
				if c, err := task.Fork(); err == nil {
					EndCopy(c)
				}
				return task.Restore()
			})
			checkRunsOn(t, pid)
			// A copy let go, or ended by the tracer before it died, exited
			// with CopyExit, and waits for its parent as a clone child.
			want := int32(CopyExit << 8)
			kids, _ := procfs.Children(pid)
			for _, k := range kids {
				waitState(t, k, 'Z')
				st, err := procfs.ReadStat(k)
				if err != nil || st.ExitCode != want || st.ExitSignal != 0 {
					t.Errorf("copy %d: %+v (%v), want wait status %#x, exit signal 0", k, st, err, want)
				}
				if !IsLostCopy(st.ExitSignal, st.ExitCode) {
					t.Errorf("copy %d is not told from a program's zombie", k)
				}
			}
			if len(kids) == 0 && at != "guard-armed" && at != "guard-blocked" && at != "guard-entry" && at != "guard-call" {
				t.Errorf("no copy under %d after the tracer died at %s", pid, at)
			}
			checkState(t, pid, before, at)
		})
	}
}

// waitState waits for pid to be in state s.
func waitState(t *testing.T, pid int, s byte) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if st, err := procfs.ReadStat(pid); err == nil && st.State == s {
			return
		}
	}
	st, err := procfs.ReadStat(pid)
	t.Fatalf("pid %d: %+v (%v), want state %c", pid, st, err, s)
}
