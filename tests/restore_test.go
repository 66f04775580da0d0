package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// outcome is what restore/<name> reads after a restart.
type outcome struct {
	State    string `json:"state"`
	Error    string `json:"error"`
	Terminal string `json:"terminal"`
	Root     int    `json:"root"`
	Seed     int    `json:"seed"`
	Tasks    []struct {
		Image []int `json:"image"`
		Now   []int `json:"now"`
		Host  int   `json:"host"`
	} `json:"tasks"`
}

// forestOf summarises a checkpoint report's tree: every number a task
// refers to, relative to the root's namespace, with its state, exit status
// and name. Two checkpoints of the same forest give the same summary,
// wherever the forest runs.
func forestOf(r *report) string {
	var b strings.Builder
	for _, tk := range r.Tasks {
		fmt.Fprintf(&b, "pid %v ppid %v tgid %v pgid %v sid %v depth %d", tk.Pid, tk.PPid, tk.TGid, tk.PGid, tk.Sid, tk.Depth)
		if tk.State != nil {
			fmt.Fprintf(&b, " state %s", *tk.State)
		}
		if tk.ExitCode != nil {
			fmt.Fprintf(&b, " exit %d", *tk.ExitCode)
		}
		if tk.Comm != nil {
			fmt.Fprintf(&b, " comm %s", *tk.Comm)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// checkpointTo copies <pid>/image through the mount into a file.
func checkpointTo(t *testing.T, m *mount, pid int, file string) *report {
	t.Helper()
	if r := run(t, cmdTimeout, nil, "cp", m.path(pid, "image"), file); r.code != 0 {
		t.Fatalf("checkpoint %d: %s", pid, r)
	}
	return inspect(t, file)
}

// restoreFile copies an image into restore/ and reads the outcome. It
// arranges for the restored tree to be killed when the test ends.
func restoreFile(t *testing.T, m *mount, file, name string) (outcome, result) {
	t.Helper()
	r := run(t, cmdTimeout, nil, "cp", file, m.path("restore", name))
	var out outcome
	data, err := os.ReadFile(m.path("restore", name))
	if err != nil {
		t.Fatalf("read restore/%s: %v", name, err)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("restore/%s is not JSON: %v\n%s", name, err, data)
	}
	if out.Seed != 0 {
		seed := out.Seed
		t.Cleanup(func() { killTree(t, seed); syscall.Kill(seed, syscall.SIGKILL) })
	}
	return out, r
}

// killWorkload ends a workload's whole tree now, so that its pids are free.
func killWorkload(t *testing.T, w *workload) {
	t.Helper()
	killTree(t, w.cmd.Process.Pid)
	w.cmd.Process.Kill()
	w.cmd.Wait()
}

// TestRestoreForests checkpoints each forest through the mount, kills it,
// restores it with cp into restore/, and checkpoints the restored tree:
// every pid at every level, parent, thread group, process group, session,
// zombie status and name must be the same.
func TestRestoreForests(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	for _, sc := range []string{"simple", "sessions", "deadpgrp", "deadsession", "threads", "zombie", "pidns"} {
		t.Run(sc, func(t *testing.T) {
			w := startWorkload(t, sc, nil)
			img := filepath.Join(t.TempDir(), "img")
			before := checkpointTo(t, m, w.root, img)
			killWorkload(t, w)

			out, r := restoreFile(t, m, img, sc)
			if r.code != 0 || out.State != "running" {
				t.Fatalf("restore: %s\noutcome %+v", r, out)
			}
			if out.Root != w.root {
				t.Errorf("restored root is pid %d, want %d", out.Root, w.root)
			}
			after := checkpointTo(t, m, out.Root, filepath.Join(t.TempDir(), "again"))
			if got, want := forestOf(after), forestOf(before); got != want {
				t.Errorf("restored forest differs:\n got:\n%s want:\n%s", got, want)
			}
			assertRunning(t, "restored "+sc, subtree(out.Root))
		})
	}
}

// TestRestoreContainer restores a container image into a fresh pid
// namespace while the original still runs, twice.
func TestRestoreContainer(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "container", nil)
	img := filepath.Join(t.TempDir(), "img")
	before := checkpointTo(t, m, w.root, img)
	if before.Header.Mode != "container" {
		t.Fatalf("mode %q, want container", before.Header.Mode)
	}
	for i := range 2 {
		out, r := restoreFile(t, m, img, "c"+strconv.Itoa(i))
		if r.code != 0 || out.State != "running" {
			t.Fatalf("restore %d: %s\noutcome %+v", i, r, out)
		}
		after := checkpointTo(t, m, out.Root, filepath.Join(t.TempDir(), "again"))
		if got, want := forestOf(after), forestOf(before); got != want {
			t.Errorf("restore %d: forest differs:\n got:\n%s want:\n%s", i, got, want)
		}
		if after.Header.Mode != "container" {
			t.Errorf("restore %d: mode %q", i, after.Header.Mode)
		}
	}
}

// TestRestoreCounterResumes proves a restored process resumes rather than
// restarts: the counter keeps its pid, its count, its memory, the values it
// holds in AVX registers, its signal handler, mask and alternate stack, its
// working directory, umask, nice value and subreaper flag, and its log file
// at the right offset across the cut.
func TestRestoreCounterResumes(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	cmd, report := startCounter(t, 64, 20)
	pid := cmd.Process.Pid
	// A blocked SIGUSR2 waits in its queue at the cut, and must still.
	syscall.Kill(pid, syscall.SIGUSR2)
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(10 * time.Millisecond) {
		if l := reportLines(t, report); strings.Contains(l[len(l)-1], " pend=1 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the counter never saw its SIGUSR2 pending")
		}
	}

	// Its resource limits and every thread's nice value, policy and rt
	// priority as /proc shows them from outside; the counter sets some of
	// each (see counter.c).
	attrs := func() string {
		lims, err := procfs.ReadLimits(pid)
		if err != nil {
			t.Fatal(err)
		}
		if lims[syscall.RLIMIT_NOFILE] != (procfs.Limit{Soft: 200, Hard: 400}) || lims[4] != (procfs.Limit{Soft: 0, Hard: 1 << 20}) {
			t.Errorf("pid %d: RLIMIT_NOFILE %+v, RLIMIT_CORE %+v, want 200/400 and 0/1MiB", pid, lims[syscall.RLIMIT_NOFILE], lims[4])
		}
		desc := fmt.Sprintf("limits %v\n", lims)
		tids, err := procfs.Threads(pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, tid := range tids {
			s, err := procfs.ReadTaskStat(pid, tid)
			if err != nil {
				t.Fatal(err)
			}
			desc += fmt.Sprintf("tid %d nice %d policy %d rt priority %d\n", tid, s.Nice, s.Policy, s.RTPriority)
		}
		for _, want := range []string{fmt.Sprintf("tid %d nice 5 policy 3 rt priority 0", pid), "nice 7 policy 5 rt priority 0", "policy 1 rt priority 3"} {
			if !strings.Contains(desc, want) {
				t.Errorf("pid %d: no thread with %q (3 SCHED_BATCH, 5 SCHED_IDLE, 1 SCHED_FIFO):\n%s", pid, want, desc)
			}
		}
		return desc
	}
	wantAttrs := attrs()
	img := filepath.Join(t.TempDir(), "img")
	checkpointTo(t, m, pid, img)
	cmd.Process.Kill()
	cmd.Wait()
	seen := len(reportLines(t, report))

	out, r := restoreFile(t, m, img, "counter")
	if r.code != 0 || out.Root != pid {
		t.Fatalf("restore: %s\noutcome %+v", r, out)
	}
	time.Sleep(500 * time.Millisecond)
	lines := reportLines(t, report)[seen:]
	if len(lines) < 3 {
		t.Fatalf("the restored counter wrote %d lines in 500 ms", len(lines))
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "start") {
			t.Fatalf("the counter started afresh: %q", l)
		}
		if !strings.HasPrefix(l, fmt.Sprintf("pid=%d ", pid)) || !strings.HasSuffix(l, "file=ok mem=ok fpu=ok") {
			t.Errorf("after restore: %q", l)
		}
	}
	if n := lineCount(t, lines[0]); n <= 20 {
		t.Errorf("first count after restore %d: it did not resume where it was", n)
	}
	// The log it kept open continues where the image left it: its lines
	// count up without a gap or a repeat, past the cut.
	logLines := reportLines(t, report+".log")
	for i := 1; i < len(logLines); i++ {
		if !strings.HasPrefix(logLines[i], "pid=") {
			break // a partial line the killed original wrote past the cut
		}
		if a, b := lineCount(t, logLines[i-1]), lineCount(t, logLines[i]); b <= a {
			t.Errorf("log line %d counts %d after %d: the offset was not restored", i, b, a)
			break
		}
	}
	for _, l := range lines {
		if !strings.Contains(l, " usr1=0 join=wait ") || !strings.Contains(l, " pend=1 sig=ok proc=ok ") {
			t.Errorf("signal and process state after restore: %q, want usr1=0 join=wait ... pend=1 sig=ok proc=ok", l)
		}
		if strings.Contains(l, " attr=bad ") {
			t.Errorf("limits, thread policies or parent-death signals lost: %q", l)
		}
	}
	// The counter saw its limits and attributes hold ("wait" only while
	// its checker thread had not looked again), and /proc agrees, thread
	// by thread.
	if l := lines[len(lines)-1]; !strings.Contains(l, " attr=ok ") {
		t.Errorf("last line after restore %q, want attr=ok", l)
	}
	if got := attrs(); got != wantAttrs {
		t.Errorf("after restore:\n%s\nbefore the checkpoint:\n%s", got, wantAttrs)
	}
	// The interval timer rings on after the cut.
	first, _ := strconv.Atoi(reportField(t, lines[0], "alrm"))
	last, _ := strconv.Atoi(reportField(t, lines[len(lines)-1], "alrm"))
	if last <= first {
		t.Errorf("SIGALRM count went from %d to %d after restore: the interval timer is gone", first, last)
	}
	// The restored handler runs, on the restored alternate stack; without
	// it SIGUSR1 would kill the counter. SIGUSR2 stays blocked. The second
	// thread then exits and the main thread joins it: the kernel clears
	// the tid word the restore registered again (clear_child_tid).
	syscall.Kill(pid, syscall.SIGUSR2)
	syscall.Kill(pid, syscall.SIGUSR1)
	seen = len(reportLines(t, report))
	time.Sleep(300 * time.Millisecond)
	lines = reportLines(t, report)[seen:]
	if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], " usr1=1 join=ok ") || !strings.Contains(lines[len(lines)-1], " sig=ok ") {
		t.Errorf("after SIGUSR1: %q, want the handler to have counted once, the thread joined, sig=ok", lines)
	}
}

// startCounter builds and starts the counter workload with a heap of mib
// MiB, and returns once it has counted past n. It is killed, by pid, when
// the test ends (also where a restore brought it back).
func startCounter(t testing.TB, mib, n int) (*exec.Cmd, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "counter")
	mustRun(t, "gcc", "-O2", "-mavx", "-pthread", "-o", bin, filepath.Join(env.modRoot, "tests", "workload", "counter.c"))
	report := filepath.Join(t.TempDir(), "report")
	cmd := exec.Command(bin, report, strconv.Itoa(mib))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); syscall.Kill(pid, syscall.SIGKILL) })
	waitCount(t, report, n)
	return cmd, report
}

func waitCount(t testing.TB, report string, n int) {
	t.Helper()
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(report); err != nil {
			continue
		}
		if l := reportLines(t, report); len(l) > 1 && lineCount(t, l[len(l)-1]) > n {
			return
		}
	}
	t.Fatalf("the counter did not reach %d", n)
}

func reportLines(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func lineCount(t testing.TB, line string) int {
	t.Helper()
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "n="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	t.Fatalf("no count in %q", line)
	return 0
}

// TestRestoreBadImages: a truncated, corrupted or impossible image fails at
// close() with a message, the outcome says why, and nothing it started is
// left behind.
func TestRestoreBadImages(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "sessions", nil)
	img := filepath.Join(t.TempDir(), "img")
	checkpointTo(t, m, w.root, img)
	good, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	try := func(name string, data []byte) {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(file, data, 0o600); err != nil {
				t.Fatal(err)
			}
			out, r := restoreFile(t, m, file, name)
			if r.code == 0 {
				t.Fatalf("cp of a bad image succeeded: %+v", out)
			}
			if !strings.Contains(string(r.stderr), "cp:") {
				t.Errorf("cp printed no error: %s", r)
			}
			if out.State != "failed" || out.Error == "" {
				t.Errorf("outcome %+v, want failed with a reason", out)
			}
			t.Logf("refused: %s", out.Error)
			// Nothing left: the daemon has no children (no seed, no task).
			time.Sleep(50 * time.Millisecond)
			if kids := childrenOf(m.pid); kids != "" {
				t.Errorf("the daemon still has children after a failed restore: %s", kids)
			}
		})
	}
	// The original still runs: a faithful copy must fail on its pids, and
	// leave the original alone.
	try("taken-pids", good)
	assertRunning(t, "the original tree", subtree(w.root))
	// With the pids free, the restore gets as far as creating the forest
	// before it meets the damage.
	killWorkload(t, w)
	try("truncated", good[:len(good)/2])
	try("no-tail", good[:len(good)-4])
	try("bit-flip", flip(good, len(good)*2/3, 3))
	try("garbage", []byte("not an image at all, just some bytes to refuse"))
	// TREE entries: pid, ppid, tgid, pgid, sid, depth (u32 each).
	tr := records(good)[2]
	field := func(task, f int) int { return 4 + task*treeEntry + 4*f }
	try("undefined-tag", edit(good, tr, field(1, 3), 999))
	// The root in the process group of its child, which leads a session of
	// its own: a group lives in one session, so no kernel makes that.
	pidOf1 := le32(good[tr.off+8+field(1, 0):])
	try("impossible-forest", edit(good, tr, field(0, 3), pidOf1))
	for _, c := range []struct {
		name string
		want string
	}{{"truncated", "image:"}, {"no-tail", "image:"}, {"bit-flip", "image:"},
		{"undefined-tag", "not defined"}, {"impossible-forest", "cannot be rebuilt"}} {
		data, _ := os.ReadFile(m.path("restore", c.name))
		if !strings.Contains(string(data), c.want) {
			t.Errorf("%s: outcome %s, want an error from the image decoder", c.name, data)
		}
	}
	for _, tk := range subtree(w.root) {
		t.Errorf("task %d/%d of a failed restore is alive", tk.tgid, tk.tid)
	}
}

// TestRestorePrivilege: an unprivileged caller may restore its own
// processes, which come back as its own, but not a root process.
func TestRestorePrivilege(t *testing.T) {
	requireEnv(t)
	m := testMount(t, "--allow-other")
	dir, err := os.MkdirTemp(env.workDir, "restore-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	asNobody := func(c *exec.Cmd) {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	checkpointKilled := func(cmd *exec.Cmd, name string) (int, string) {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); syscall.Kill(pid, syscall.SIGKILL) })
		time.Sleep(100 * time.Millisecond)
		img := filepath.Join(dir, name)
		checkpointTo(t, m, pid, img)
		os.Chmod(img, 0o644)
		cmd.Process.Kill()
		cmd.Wait()
		return pid, img
	}

	// A root process: refused, and nothing of it runs.
	pid, img := checkpointKilled(exec.Command("sleep", "100"), "root.img")
	r := run(t, cmdTimeout, asNobody, "cp", img, m.path("restore", "root"))
	if r.code == 0 || !strings.Contains(string(r.stderr), "not permitted") {
		t.Errorf("nobody restoring a root process: %s, want Operation not permitted", r)
	}
	if taskState(pid, pid) != 0 {
		t.Errorf("pid %d runs after a refused restore", pid)
	}

	// Its own process: restored, as nobody.
	own := exec.Command("sleep", "100")
	asNobody(own)
	pid, img = checkpointKilled(own, "own.img")
	r = run(t, cmdTimeout, asNobody, "cp", img, m.path("restore", "own"))
	if r.code != 0 {
		t.Fatalf("nobody restoring its own process: %s", r)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	st, err := procTruth(pid)
	if err != nil {
		t.Fatalf("the restored process: %v", err)
	}
	if lines := credLines(t, pid); !strings.Contains(lines, "Uid:\t65534\t65534\t65534\t65534") {
		t.Errorf("restored as %s (%+v), want uid 65534", lines, st)
	}
}

// childrenOf lists the children of every thread of pid.
func childrenOf(pid int) string {
	var all []string
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, d := range dirs {
		data, _ := os.ReadFile(d)
		all = append(all, strings.Fields(string(data))...)
	}
	return strings.Join(all, " ")
}

// TestRestorePipeline restores a real shell pipeline mid-stream, `seq |
// gzip > file`, with bytes in the pipe between them at the cut: it must
// finish with exactly seq's output, nothing lost or doubled.
func TestRestorePipeline(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	const n = 10000000
	out := filepath.Join(t.TempDir(), "out.gz")
	cmd := exec.Command("sh", "-c", fmt.Sprintf("seq 1 %d | gzip -1 > %s", n, out))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	root := cmd.Process.Pid
	t.Cleanup(func() { killTree(t, root); cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(readyTimeout); len(subtree(root)) < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the pipeline did not start")
		}
	}
	time.Sleep(150 * time.Millisecond)
	img := filepath.Join(t.TempDir(), "img")
	checkpointTo(t, m, root, img)
	if len(subtree(root)) < 3 {
		t.Skip("the pipeline finished before the checkpoint: nothing to prove")
	}
	killTree(t, root)
	cmd.Process.Kill()
	cmd.Wait()

	res, r := restoreFile(t, m, img, "pipeline")
	if r.code != 0 || res.Root != root {
		t.Fatalf("restore: %s\noutcome %+v", r, res)
	}
	// The restored shell is the seed's child: wait for it to be gone.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if s := taskState(root, root); s == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restored pipeline did not finish within a minute")
		}
	}
	got := mustRun(t, "sh", "-c", fmt.Sprintf("gzip -dc %s | md5sum", out))
	want := mustRun(t, "sh", "-c", fmt.Sprintf("seq 1 %d | md5sum", n))
	if string(got) != string(want) {
		lines := mustRun(t, "sh", "-c", fmt.Sprintf("gzip -dc %s | wc -l; gzip -dc %s | tail -1", out, out))
		t.Fatalf("the restored pipeline wrote other bytes than seq 1 %d (lines, last line: %s)", n, lines)
	}
}

// reportField returns the value of key=value in a report line.
func reportField(t testing.TB, line, key string) string {
	t.Helper()
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	t.Fatalf("no %s= in %q", key, line)
	return ""
}

// restoreRealProgram checkpoints a running program through the mount, kills
// it, restores it, and returns the report lines it wrote before the cut
// and after the restore.
func restoreRealProgram(t *testing.T, report string, cmd *exec.Cmd, warmup time.Duration) (before, after []string) {
	t.Helper()
	m := testMount(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); syscall.Kill(pid, syscall.SIGKILL) })
	time.Sleep(warmup)
	img := filepath.Join(t.TempDir(), "img")
	checkpointTo(t, m, pid, img)
	cmd.Process.Kill()
	cmd.Wait()
	before = reportLines(t, report)
	out, r := restoreFile(t, m, img, "program")
	if r.code != 0 || out.Root != pid {
		t.Fatalf("restore: %s\noutcome %+v", r, out)
	}
	time.Sleep(time.Second)
	if s := taskState(pid, pid); s == 0 || s == 'Z' {
		t.Fatalf("the restored program died (state %q)", s)
	}
	return before, reportLines(t, report)
}

// TestRestoreGoProgram: a Go program with goroutines on several threads,
// its netpoller's epoll and eventfd, and its timers, carries on.
func TestRestoreGoProgram(t *testing.T) {
	requireEnv(t)
	bin := filepath.Join(t.TempDir(), "goroutines")
	mustRun(t, goTool(), "build", "-o", bin, filepath.Join(env.modRoot, "tests", "workload", "goroutines"))
	report := filepath.Join(t.TempDir(), "report")
	before, after := restoreRealProgram(t, report, exec.Command(bin, report), 600*time.Millisecond)
	if len(before) < 3 || len(after) < len(before)+5 {
		t.Fatalf("%d lines before the cut, %d after a second of the restored program", len(before), len(after))
	}
	last := before[len(before)-1]
	pid, tick := reportField(t, last, "pid"), lineTick(t, last)
	for _, l := range after[len(before):] {
		if reportField(t, l, "pid") != pid || reportField(t, l, "sum") != "ok" {
			t.Errorf("after restore: %q", l)
		}
	}
	// It resumed where the image was taken: its ticks go on from there
	// instead of starting over at 0.
	if first := lineTick(t, after[len(before)]); first == 0 || first > tick+2 {
		t.Errorf("first tick after restore %d, last before the kill %d", first, tick)
	}
}

func lineTick(t testing.TB, line string) int {
	n, err := strconv.Atoi(reportField(t, line, "tick"))
	if err != nil {
		t.Fatalf("bad tick in %q", line)
	}
	return n
}

// TestRestorePython: a Python interpreter in a loop that checks its own
// state carries on with its memory and its open file.
func TestRestorePython(t *testing.T) {
	requireEnv(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 on this machine")
	}
	const prog = `
import os, sys
d = {i: i * i for i in range(100000)}
base = sum(d.values())
n = 0
out = open(sys.argv[1], "w", buffering=1)
while True:
    n += 1
    d[n % 100000] += 1
    if n % 20000 == 0:
        ok = sum(d.values()) == base + n
        out.write("pid=%d n=%d state=%s\n" % (os.getpid(), n, "ok" if ok else "bad"))
`
	report := filepath.Join(t.TempDir(), "report")
	before, after := restoreRealProgram(t, report, exec.Command("python3", "-c", prog, report), time.Second)
	if len(before) < 3 {
		t.Fatalf("only %d lines before the cut", len(before))
	}
	pid := reportField(t, before[0], "pid")
	prev := 0
	for i, l := range after {
		if reportField(t, l, "pid") != pid || reportField(t, l, "state") != "ok" {
			t.Errorf("line %d: %q", i, l)
		}
		n, _ := strconv.Atoi(reportField(t, l, "n"))
		if n <= prev {
			t.Errorf("line %d: n=%d after %d: the file offset or the state went back", i, n, prev)
		}
		prev = n
	}
	if len(after) <= len(before) {
		t.Errorf("%d lines after the restore, %d before: it did not carry on", len(after), len(before))
	}
}

// TestRestoreKeepsCredentials: a process of another user comes back as that
// user, with its groups and its (empty) capability sets, not as root.
func TestRestoreKeepsCredentials(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	// Somewhere the other user can reach and write.
	dir, err := os.MkdirTemp(env.workDir, "nobody-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	bin := filepath.Join(dir, "counter")
	mustRun(t, "gcc", "-O2", "-mavx", "-pthread", "-o", bin, filepath.Join(env.modRoot, "tests", "workload", "counter.c"))
	report := filepath.Join(dir, "report")
	cmd := exec.Command(bin, report, "8")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{65534, 100}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); syscall.Kill(pid, syscall.SIGKILL) })
	waitCount(t, report, 5)
	before, err := procTruth(pid)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus := credLines(t, pid)
	img := filepath.Join(t.TempDir(), "img")
	checkpointTo(t, m, pid, img)
	cmd.Process.Kill()
	cmd.Wait()

	out, r := restoreFile(t, m, img, "nobody")
	if r.code != 0 || out.Root != pid {
		t.Fatalf("restore: %s\noutcome %+v", r, out)
	}
	if got := credLines(t, pid); got != wantStatus {
		t.Errorf("credentials after restore:\n%s\nwant:\n%s", got, wantStatus)
	}
	time.Sleep(200 * time.Millisecond)
	lines := reportLines(t, report)
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, "file=ok mem=ok fpu=ok") || !strings.Contains(last, fmt.Sprintf("pid=%d ", before.Tgid)) {
		t.Errorf("the restored counter reports %q", last)
	}
}

// credLines returns the credential lines of /proc/<pid>/status.
func credLines(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(string(data), "\n") {
		for _, k := range []string{"Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"} {
			if strings.HasPrefix(l, k) {
				keep = append(keep, l)
			}
		}
	}
	return strings.Join(keep, "\n")
}

// TestExternalDescriptors: a process writing into a pipe to a process
// outside its tree cannot be checkpointed faithfully: with
// --external=refuse the read fails with a clear error; by default the
// mount records it, and the restored process finds /dev/null at that
// descriptor.
func TestExternalDescriptors(t *testing.T) {
	requireEnv(t)
	start := func() (*exec.Cmd, io.ReadCloser) {
		cmd := exec.Command("sleep", "100")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		t.Cleanup(func() { out.Close(); cmd.Process.Kill(); cmd.Wait(); syscall.Kill(pid, syscall.SIGKILL) })
		time.Sleep(50 * time.Millisecond)
		return cmd, out
	}

	m := testMount(t, "--external=refuse")
	cmd, _ := start()
	r := run(t, cmdTimeout, nil, "cat", m.path(cmd.Process.Pid, "image"))
	if r.code == 0 || !strings.Contains(string(r.stderr), "not supported") {
		t.Errorf("cat of a tree with a pipe leading out: %s, want Operation not supported", r)
	}

	m = testMount(t)
	cmd, _ = start()
	pid := cmd.Process.Pid
	img := filepath.Join(t.TempDir(), "img")
	checkpointTo(t, m, pid, img)
	cmd.Process.Kill()
	cmd.Wait()
	out, rr := restoreFile(t, m, img, "replaced")
	if rr.code != 0 || out.Root != pid {
		t.Fatalf("restore: %s\noutcome %+v", rr, out)
	}
	if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/1", pid)); err != nil || target != "/dev/null" {
		t.Errorf("restored fd 1 is %q (%v), want /dev/null in place of the pipe", target, err)
	}
}
