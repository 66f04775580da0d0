package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/image"
)

// TestTerminalJob: a job of an interactive shell (cat, in the foreground,
// reading and writing the terminal) is checkpointed, killed, and:
//   - restored through the mount: its terminal descriptors are /dev/null;
//   - restored by cp into shell-job/, typed into the shell: they are the
//     shell's terminal, and cat echoes what is typed while the shell
//     waits for a foreground job of its own;
//   - restored with `ckptfs restore --shell-job` typed into the shell: it
//     has the terminal again, in the foreground, echoes what is typed,
//     and ends with Ctrl-D, giving the shell its terminal back.
func TestTerminalJob(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	work := t.TempDir()
	sh := startShell(t, work, filepath.Dir(env.bin))
	sh.expect("$ ", readyTimeout)

	job := func() int {
		sh.typeLine("cat")
		pid := waitChild(t, sh.cmd.Process.Pid, "cat")
		sh.typeLine("before")
		sh.expect("before\r\nbefore", cmdTimeout) // the terminal's echo, then cat's
		return pid
	}
	img := filepath.Join(work, "cat.img")
	pid := job()
	if r := ckptfs(t, "checkpoint", strconv.Itoa(pid), "-o", img); r.code != 0 {
		t.Fatalf("checkpoint of a terminal job: %s", r)
	}
	fd0 := fdRecord(t, img, 0)
	if fd0.Kind != image.FileReplaced || fd0.ExternalKind() != image.ExternalTerminal || !fd0.Foreground() || fd0.Path != sh.slave {
		t.Errorf("fd 0 recorded as %+v, want the terminal %s, in the foreground", fd0, sh.slave)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	sh.expect("$ ", cmdTimeout)

	t.Run("mount", func(t *testing.T) {
		out, r := restoreFile(t, m, img, "cat")
		if r.code != 0 || out.Root != pid {
			t.Fatalf("restore: %s\noutcome %+v", r, out)
		}
		// Its standard input is /dev/null: cat reads its end and exits,
		// where with the terminal it would wait.
		waitGone(t, pid)
	})

	t.Run("mount shell-job", func(t *testing.T) {
		status := m.path("shell-job", "cat")
		// sleep keeps the shell from reading the terminal meanwhile:
		// only the restored cat does.
		sh.typeLine("cp " + img + " " + status + " && sleep 1000")
		waitPid(t, pid)
		defer killTree(t, pid)
		sleeper := waitChild(t, sh.cmd.Process.Pid, "sleep")
		defer killTree(t, sleeper)
		data, err := os.ReadFile(status)
		if err != nil {
			t.Fatal(err)
		}
		var out outcome
		if err := json.Unmarshal(data, &out); err != nil || out.State != "running" || out.Root != pid || out.Terminal != sh.slave {
			t.Fatalf("shell-job/cat: %s (%v), want running, root %d, terminal %s", data, err, pid, sh.slave)
		}
		defer killTree(t, out.Seed)
		for fd := range 3 {
			if got, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd)); err != nil || got != sh.slave {
				t.Errorf("restored through shell-job/, fd %d is %q (%v), want the terminal %s", fd, got, err, sh.slave)
			}
		}
		sh.typeLine("again")
		sh.expect("again\r\nagain", cmdTimeout) // the echo, then cat's
		killTree(t, pid)
		killTree(t, sleeper)
		sh.expect("$ ", cmdTimeout)
	})

	t.Run("shell-job", func(t *testing.T) {
		result := filepath.Join(work, "restore.json")
		sh.typeLine("ckptfs restore --shell-job " + img + " > " + result)
		waitPid(t, pid)
		defer killTree(t, pid)
		sh.typeLine("after")
		sh.expect("after\r\nafter", cmdTimeout) // cat reads the terminal in the foreground
		for fd := range 3 {
			if got, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd)); err != nil || got != sh.slave {
				t.Errorf("restored as a shell job, fd %d is %q (%v), want the terminal %s", fd, got, err, sh.slave)
			}
		}
		sh.typeKey("\x04") // Ctrl-D: cat ends, and so does the restore
		if out, code := sh.run("true", cmdTimeout); code != 0 {
			t.Errorf("the shell after the job: %q, status %d", out, code)
		}
		data, err := os.ReadFile(result)
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Root       int
			Foreground struct{ PGid int }
		}
		if err := json.Unmarshal(data, &res); err != nil || res.Root != pid || res.Foreground.PGid != pid {
			t.Errorf("ckptfs restore --shell-job printed %s (%v), want root %d and its group %d in the foreground", data, err, pid, pid)
		}
	})
}

// waitChild waits for a child of parent whose command is comm, and returns
// its pid.
func waitChild(t *testing.T, parent int, comm string) int {
	t.Helper()
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent))
		for _, c := range strings.Fields(string(data)) {
			pid, _ := strconv.Atoi(c)
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == comm {
				return pid
			}
		}
	}
	t.Fatalf("no %s started under %d", comm, parent)
	return 0
}

// waitPid waits for process pid to exist (a restore making it).
func waitPid(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if s := taskState(pid, pid); s != 0 && s != 'Z' {
			return
		}
	}
	t.Fatalf("process %d did not appear", pid)
}

// waitGone waits for pid to be free.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(reapTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if taskState(pid, pid) == 0 {
			return
		}
	}
	t.Fatalf("process %d is still there", pid)
}
