package restart

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

// TestMain makes the test binary a child subreaper, so that the trees the
// tests kill are reaped at once and their pids are free to restore.
func TestMain(m *testing.M) {
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	os.Exit(m.Run())
}

// buildCounter compiles the self-verifying counter workload.
func buildCounter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "counter")
	out, err := exec.Command("gcc", "-O2", "-mavx", "-pthread", "-o", bin, "../tests/workload/counter.c").CombinedOutput()
	if err != nil {
		t.Fatalf("build counter: %v\n%s", err, out)
	}
	return bin
}

// reportLines reads the counter's report.
func reportLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// counterN returns n of a report line "pid=P n=N mem=.. fpu=..".
func counterN(t *testing.T, line string) int {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "n="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			return n
		}
	}
	t.Fatalf("no n= in %q", line)
	return 0
}

// killPid ends a process by pid and waits until it is gone.
func killPid(pid int) {
	unix.Kill(pid, unix.SIGKILL)
	for i := 0; i < 500; i++ {
		var ws unix.WaitStatus
		unix.Wait4(-1, &ws, unix.WNOHANG, nil) // reap what comes to us
		if unix.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRestoreCounterResumes(t *testing.T) {
	testenv.NeedRoot(t)
	bin := buildCounter(t)
	report := filepath.Join(t.TempDir(), "report")
	cmd := exec.Command(bin, report, "64")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { killPid(pid) })
	// Let it count well past its start.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(report); err == nil {
			if l := reportLines(t, report); len(l) > 1 && counterN(t, l[len(l)-1]) > 20 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("counter did not count")
		}
	}
	var img bytes.Buffer
	if _, err := checkpoint.Write(&img, pid, checkpoint.Options{}); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	before := len(reportLines(t, report))

	res, err := Restore(bufio.NewReader(bytes.NewReader(img.Bytes())), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Root != pid {
		t.Errorf("restored root is pid %d, want %d", res.Root, pid)
	}
	time.Sleep(400 * time.Millisecond)
	lines := reportLines(t, report)
	after := lines[before:]
	if len(after) < 3 {
		t.Fatalf("restored counter wrote %d lines in 400 ms, want it running:\n%s", len(after), strings.Join(lines, "\n"))
	}
	want := "pid=" + strconv.Itoa(pid) + " "
	for _, l := range after {
		if strings.HasPrefix(l, "start") {
			t.Fatalf("counter started afresh instead of resuming: %q", l)
		}
		if !strings.HasPrefix(l, want) || !strings.HasSuffix(l, "file=ok mem=ok fpu=ok") {
			t.Errorf("after restore: %q, want %s... file=ok mem=ok fpu=ok", l, want)
		}
	}
	if n := counterN(t, after[0]); n <= 20 {
		t.Errorf("first count after restore is %d: it did not resume where it was", n)
	}
	// glibc registered rseq for the thread: the registration is back.
	var again bytes.Buffer
	if _, err := checkpoint.Write(&again, pid, checkpoint.Options{}); err != nil {
		t.Fatalf("checkpoint of the restored counter: %v", err)
	}
	if before, after := rseqOf(t, img.Bytes()), rseqOf(t, again.Bytes()); before == nil || after == nil || *before != *after {
		t.Errorf("rseq registration before %+v, after restore %+v", before, after)
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil || strings.TrimSpace(string(st)) != "counter" {
		t.Errorf("restored comm %q (%v), want counter", st, err)
	}
}

func TestRestoreRefusesTakenPid(t *testing.T) {
	testenv.NeedRoot(t)
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { killPid(pid) })
	var img bytes.Buffer
	if _, err := checkpoint.Write(&img, pid, checkpoint.Options{}); err != nil {
		t.Fatal(err)
	}
	kids := children(t)
	_, err := Restore(&img, Options{}) // the original still holds the pid
	if err == nil || !errors.Is(err, unix.EEXIST) || !strings.Contains(err.Error(), strconv.Itoa(pid)) {
		t.Fatalf("restore over a live pid: %v, want an error naming pid %d as taken", err, pid)
	}
	if got := children(t); got != kids {
		t.Errorf("children after a failed restore: %q, before: %q", got, kids)
	}
}

func TestRestoreRefusesCorruptImage(t *testing.T) {
	testenv.NeedRoot(t)
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	var img bytes.Buffer
	if _, err := checkpoint.Write(&img, pid, checkpoint.Options{}); err != nil {
		t.Fatal(err)
	}
	killPid(pid)
	kids := children(t)
	b := img.Bytes()
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"truncated in the pages", b[:len(b)*3/4]},
		{"truncated before the tail", b[:len(b)-10]},
		{"bit flip in the pages", flip(b, len(b)/2)},
	} {
		_, err := Restore(bytes.NewReader(c.data), Options{})
		if err == nil {
			t.Errorf("%s: restore succeeded", c.name)
			killPid(pid)
			continue
		}
		if !strings.Contains(err.Error(), "image:") {
			t.Errorf("%s: %v, want an image format error", c.name, err)
		}
		if unix.Kill(pid, 0) == nil {
			t.Errorf("%s: pid %d is alive after a failed restore", c.name, pid)
			killPid(pid)
		}
		if got := children(t); got != kids {
			t.Errorf("%s: children after a failed restore: %q, before: %q", c.name, got, kids)
		}
	}
}

func flip(b []byte, at int) []byte {
	c := bytes.Clone(b)
	c[at] ^= 0x10
	return c
}

// children lists this process's children (threads' included).
func children(t *testing.T) string {
	t.Helper()
	var all []string
	dirs, _ := filepath.Glob("/proc/self/task/*/children")
	for _, d := range dirs {
		data, _ := os.ReadFile(d)
		all = append(all, strings.Fields(string(data))...)
	}
	return strings.Join(all, " ")
}

// rseqOf returns the rseq registration of an image's first task.
func rseqOf(t *testing.T, data []byte) *image.RSeq {
	t.Helper()
	r := image.NewReader(bytes.NewReader(data))
	if _, err := r.NextTask(); err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := r.NextRecord()
		if err != nil {
			return nil
		}
		if rec.Type == image.RecRSeq {
			q, err := r.ReadRSeq(rec)
			if err != nil {
				t.Fatal(err)
			}
			return q
		}
	}
}
