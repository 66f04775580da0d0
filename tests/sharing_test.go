package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRestoreSharedTables: processes that share a descriptor table or an fs
// struct (clone with CLONE_FILES, CLONE_FS) share them again after a
// restore: a descriptor one opens later, a directory it enters and a umask
// it sets are the other's too, and a process that shared nothing still has
// its own (see workload/sharing.c).
func TestRestoreSharedTables(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	file := filepath.Join(t.TempDir(), "report")
	w := startLogWorkload(t, exec.Command(buildWorkload(t, "sharing"), file), file)
	pid, cmd := w.pid, w.cmd
	roles := []string{"parent", "child", "grandchild", "other"}
	before := waitRoles(t, file, roles, 0)
	pids := map[string]int{}
	for _, r := range roles {
		pids[r] = roleField(t, before[r], "pid")
		if !strings.Contains(before[r], " fd100=none cwd=top umask=022 log=ok") {
			t.Fatalf("before the checkpoint: %q", before[r])
		}
	}

	// The image says who shares what with its parent.
	img := filepath.Join(t.TempDir(), "img")
	rep := checkpointTo(t, m, pid, img)
	want := map[string][]string{"parent": nil, "child": {"files", "fs"}, "grandchild": {"files"}, "other": nil}
	checkShares := func(what string, rep *report) {
		t.Helper()
		for _, r := range roles {
			i := slices.IndexFunc(rep.Tasks, func(task reportTask) bool {
				return len(task.Pid.Numbers) > 0 && task.Pid.Numbers[0] == pids[r]
			})
			if i < 0 {
				t.Errorf("%s: %s (pid %d) is not in the tree", what, r, pids[r])
			} else if got := rep.Tasks[i].Shares; !slices.Equal(got, want[r]) {
				t.Errorf("%s: %s shares %q with its parent, want %q", what, r, got, want[r])
			}
		}
	}
	checkShares("checkpoint", rep)

	killTree(t, pid)
	cmd.Wait()
	seen := len(reportLines(t, file))
	out, r := restoreFile(t, m, img, "sharing")
	if r.code != 0 || out.Root != pid {
		t.Fatalf("restore: %s\noutcome %+v", r, out)
	}
	after := waitRoles(t, file, roles, seen)
	for _, r := range roles {
		if !strings.Contains(after[r], " fd100=none cwd=top umask=022 log=ok") {
			t.Errorf("after the restore: %q", after[r])
		}
		if n := roleField(t, after[r], "n"); n <= roleField(t, before[r], "n") {
			t.Errorf("%s counts %d after the restore, %d before: it did not resume", r, n, roleField(t, before[r], "n"))
		}
	}
	for _, l := range reportLines(t, file)[seen:] {
		if strings.HasPrefix(l, "start") {
			t.Fatalf("a process started afresh: %q", l)
		}
	}
	// A second checkpoint of the restored tree finds the same sharing.
	checkShares("checkpoint of the restored tree", checkpointTo(t, m, pid, filepath.Join(t.TempDir(), "img2")))

	// The child opens descriptor 100, enters sub and sets umask 077.
	if err := syscall.Kill(pids["child"], syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	expect := map[string]string{
		"parent":     " fd100=probe cwd=sub umask=077 log=ok",
		"child":      " fd100=probe cwd=sub umask=077 log=ok",
		"grandchild": " fd100=probe cwd=top umask=022 log=ok",
		"other":      " fd100=none cwd=top umask=022 log=ok",
	}
	var last map[string]string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		last = waitRoles(t, file, roles, len(reportLines(t, file))-len(roles)*2)
		ok := true
		for _, r := range roles {
			ok = ok && strings.HasSuffix(last[r], expect[r])
		}
		if ok {
			t.Logf("after the child's changes: %q", last)
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	for _, r := range roles {
		if !strings.HasSuffix(last[r], expect[r]) {
			t.Errorf("after the child's changes: %q, want ...%q", last[r], expect[r])
		}
	}
}

// waitRoles waits until every role has written a line to report past its
// first skip lines, and returns the last line of each.
func waitRoles(t *testing.T, report string, roles []string, skip int) map[string]string {
	t.Helper()
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(20 * time.Millisecond) {
		last := map[string]string{}
		if _, err := os.Stat(report); err != nil {
			// not written yet
		} else if lines := reportLines(t, report); len(lines) > skip {
			for _, l := range lines[max(skip, 0):] {
				if role, _, ok := strings.Cut(l, " "); ok && strings.Contains(l, " n=") {
					last[role] = l
				}
			}
		}
		if len(last) == len(roles) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every one of %v wrote to %s: %v", roles, report, last)
		}
	}
}

// roleField is the number after "key=" in a line of the workload.
func roleField(t *testing.T, line, key string) int {
	t.Helper()
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	t.Fatalf("no %s in %q", key, line)
	return 0
}
