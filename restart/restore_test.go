package restart

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/ptrace"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

// TestMain makes the test binary a child subreaper, so that the trees the
// tests kill are reaped at once and their pids are free to restore.
func TestMain(m *testing.M) {
	ptrace.ReserveMainThread()
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
	// Its limits and every thread's scheduling attributes, as /proc shows
	// them from outside.
	wantAttrs := attrsOf(t, pid)
	var img bytes.Buffer
	if _, err := checkpoint.Write(context.Background(), &img, pid, checkpoint.Options{}); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	before := len(reportLines(t, report))

	res, err := Restore(context.Background(), bufio.NewReader(bytes.NewReader(img.Bytes())), Options{})
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
	// The counter checks its limits, its threads' policies, priorities
	// and nice values and their parent-death signals itself ("wait" while
	// its checker thread has not looked since the line before)...
	for _, l := range after {
		if strings.Contains(l, " attr=bad ") {
			t.Errorf("after restore: %q: limits or thread attributes lost", l)
		}
	}
	if l := after[len(after)-1]; !strings.Contains(l, " attr=ok ") {
		t.Errorf("last line after restore: %q, want attr=ok", l)
	}
	// ...and /proc agrees, thread by thread (same tids).
	if got := attrsOf(t, pid); got != wantAttrs {
		t.Errorf("limits and threads after restore:\n%s\nbefore the checkpoint:\n%s", got, wantAttrs)
	}
	// glibc registered rseq for the thread: the registration is back.
	var again bytes.Buffer
	if _, err := checkpoint.Write(context.Background(), &again, pid, checkpoint.Options{}); err != nil {
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
	cmd, img := sleepImage(t)
	pid := cmd.Process.Pid
	kids := children(t)
	_, err := Restore(context.Background(), img, Options{}) // the original still holds the pid
	if err == nil || !errors.Is(err, unix.EEXIST) || !strings.Contains(err.Error(), strconv.Itoa(pid)) {
		t.Fatalf("restore over a live pid: %v, want an error naming pid %d as taken", err, pid)
	}
	if got := children(t); got != kids {
		t.Errorf("children after a failed restore: %q, before: %q", got, kids)
	}
}

func TestRestoreRefusesCorruptImage(t *testing.T) {
	testenv.NeedRoot(t)
	cmd, img := sleepImage(t)
	pid := cmd.Process.Pid
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
		_, err := Restore(context.Background(), bytes.NewReader(c.data), Options{})
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

// TestRestoreRefusesRaisedHardLimit: an image whose process had a higher
// hard limit than the restored task inherits comes back with it only where
// the restorer may raise it (CAP_SYS_RESOURCE); elsewhere the restore
// fails naming the task, the resource and both values, and leaves nothing.
func TestRestoreRefusesRaisedHardLimit(t *testing.T) {
	testenv.NeedRoot(t)
	cmd, img := sleepImage(t)
	pid := cmd.Process.Pid
	cmd.Process.Kill()
	cmd.Wait()
	// The restored task inherits this process's limits (through the
	// seed): ask for one more descriptor than its hard limit.
	var inherited unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &inherited); err != nil {
		t.Fatal(err)
	}
	if inherited.Max == unix.RLIM_INFINITY {
		t.Skip("RLIMIT_NOFILE has no hard limit here")
	}
	want := inherited.Max + 1
	b := img.Bytes()
	r := image.NewReader(bytes.NewReader(b))
	if _, err := r.NextTask(); err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := r.NextRecord()
		if err != nil {
			t.Fatalf("no RLIMITS record: %v", err)
		}
		if rec.Type == image.RecRLimits {
			binary.LittleEndian.PutUint64(b[rec.Offset+image.HeaderSize+4+16*unix.RLIMIT_NOFILE+8:], want)
			break
		}
	}
	// The TAIL's checksum covers the change: CRC32C of everything before
	// the 32-byte TAIL, 8 bytes into its payload.
	binary.LittleEndian.PutUint32(b[len(b)-16:], crc32.Checksum(b[:len(b)-32], crc32.MakeTable(crc32.Castagnoli)))
	kids := children(t)

	res, err := Restore(context.Background(), bytes.NewReader(b), Options{})
	status, _ := os.ReadFile("/proc/self/status")
	var capEff uint64
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			capEff, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if capEff&(1<<unix.CAP_SYS_RESOURCE) != 0 {
		if err != nil {
			t.Fatalf("restore with CAP_SYS_RESOURCE: %v", err)
		}
		lims, err := procfs.ReadLimits(res.Root)
		if err != nil || lims[unix.RLIMIT_NOFILE].Hard != want {
			t.Errorf("RLIMIT_NOFILE after restore %+v (%v), want hard %d", lims[unix.RLIMIT_NOFILE], err, want)
		}
		return
	}
	if err == nil {
		t.Fatalf("restore raised RLIMIT_NOFILE's hard limit to %d without CAP_SYS_RESOURCE (root %d)", want, res.Root)
	}
	t.Logf("refused: %v", err)
	for _, part := range []string{fmt.Sprintf("pid %d ", pid), "RLIMIT_NOFILE", fmt.Sprintf("hard limit %d ", want),
		fmt.Sprintf("the %d the restored task inherited", inherited.Max), "CAP_SYS_RESOURCE"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
	if unix.Kill(pid, 0) == nil {
		t.Errorf("pid %d is alive after a failed restore", pid)
	}
	if got := children(t); got != kids {
		t.Errorf("children after a failed restore: %q, before: %q", got, kids)
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

// attrsOf describes a process's resource limits and each thread's nice
// value, policy and rt priority as /proc shows them, for comparison. It
// also checks that the counter's are as it sets them up.
func attrsOf(t *testing.T, pid int) string {
	t.Helper()
	lims, err := procfs.ReadLimits(pid)
	if err != nil {
		t.Fatal(err)
	}
	if lims[unix.RLIMIT_NOFILE] != (procfs.Limit{Soft: 200, Hard: 400}) || lims[unix.RLIMIT_CORE] != (procfs.Limit{Soft: 0, Hard: 1 << 20}) ||
		lims[unix.RLIMIT_STACK].Soft != 4<<20 {
		t.Errorf("pid %d: limits %+v, want the counter's", pid, lims)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "limits %v\n", lims)
	tids, err := procfs.Threads(pid)
	if err != nil {
		t.Fatal(err)
	}
	policies := map[uint32]int{}
	for _, tid := range tids {
		s, err := procfs.ReadTaskStat(pid, tid)
		if err != nil {
			t.Fatal(err)
		}
		policies[s.Policy]++
		fmt.Fprintf(&b, "tid %d nice %d policy %s rt priority %d\n", tid, s.Nice, image.PolicyName(s.Policy), s.RTPriority)
		switch {
		case tid == pid && (s.Policy != unix.SCHED_BATCH || s.Nice != 5):
			t.Errorf("pid %d: main thread %+v, want SCHED_BATCH at nice 5", pid, s)
		case s.Policy == unix.SCHED_IDLE && s.Nice != 7:
			t.Errorf("pid %d: idle thread %d %+v, want nice 7", pid, tid, s)
		case s.Policy == unix.SCHED_FIFO && s.RTPriority != 3:
			t.Errorf("pid %d: fifo thread %d %+v, want rt priority 3", pid, tid, s)
		}
	}
	if policies[unix.SCHED_IDLE] != 1 || policies[unix.SCHED_FIFO] != 1 {
		t.Errorf("pid %d: policies %v, want one SCHED_IDLE and one SCHED_FIFO thread", pid, policies)
	}
	return b.String()
}

// sleepImage starts sleep, checkpoints it into memory and returns both; the
// process is killed, by pid, when the test ends at the latest.
func sleepImage(t *testing.T) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { killPid(pid) })
	var img bytes.Buffer
	if _, err := checkpoint.Write(context.Background(), &img, pid, checkpoint.Options{}); err != nil {
		t.Fatal(err)
	}
	return cmd, &img
}
