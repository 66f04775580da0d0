package tests

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// logWorkload is a self-verifying workload: it appends a line to its report
// file now and then, which the test reads whatever happens to the process.
type logWorkload struct {
	cmd    *exec.Cmd
	pid    int
	report string
}

// buildWorkload compiles tests/workload/<name>.c and returns the binary.
func buildWorkload(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	mustRun(t, "gcc", "-O2", "-o", bin, filepath.Join(env.modRoot, "tests", "workload", name+".c"))
	return bin
}

// startLogWorkload starts cmd, which writes to report, and waits for its first
// lines. Its tree is killed, by pid, when the test ends.
func startLogWorkload(t *testing.T, cmd *exec.Cmd, report string) *logWorkload {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &logWorkload{cmd: cmd, pid: cmd.Process.Pid, report: report}
	t.Cleanup(func() { killTree(t, w.pid); cmd.Process.Kill(); cmd.Wait() })
	waitLines(t, report, 5)
	return w
}

// cutAndRestore checkpoints the workload through m, kills it and restores
// the image as restore/<name>, then waits for more lines. It returns the
// lines the original wrote and those the restored tree wrote.
func (w *logWorkload) cutAndRestore(t *testing.T, m *mount, name string, more int) (before, after []string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img")
	checkpointTo(t, m, w.pid, img)
	killTree(t, w.pid)
	w.cmd.Process.Kill()
	w.cmd.Wait()
	before = reportLines(t, w.report) // all of the original's, up to its death

	out, r := restoreFile(t, m, img, name)
	if r.code != 0 || out.Root != w.pid {
		t.Fatalf("restore: %s\noutcome %+v", r, out)
	}
	waitLines(t, w.report, len(before)+more)
	return before, reportLines(t, w.report)[len(before):]
}
