package tests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Timeouts. Every external command runs under one, so that a hang fails the
// test instead of stalling the suite.
const (
	cmdTimeout   = 20 * time.Second // a tool reading through the mount, or ckptfs
	mountTimeout = 10 * time.Second // until the mount appears in mountinfo
	readyTimeout = 20 * time.Second // until a workload prints READY
	stopTimeout  = 10 * time.Second // for the daemon to exit after SIGTERM
	reapTimeout  = 10 * time.Second // for a killed workload to be reaped
	// testGrace is the snapshot grace period of the tests' mounts
	// (--grace), unless a test asks for another: long enough for a tool's
	// stat, open and read of a small tree, short enough not to be waited
	// for long. graceWait is longer.
	testGrace = 400 * time.Millisecond
	graceWait = testGrace + 400*time.Millisecond
)

// lineLogger is an io.Writer that logs each complete line to t.
type lineLogger struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.t.Logf("%s%s", l.prefix, l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// flush logs an incomplete last line.
func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Logf("%s%s", l.prefix, l.buf)
		l.buf = nil
	}
}

// result is what a finished command produced.
type result struct {
	cmd      string
	stdout   []byte
	stderr   []byte
	err      error // nil on exit status 0
	code     int   // exit status, -1 if killed or never started
	timedOut bool
	elapsed  time.Duration
}

func (r result) String() string {
	s := fmt.Sprintf("%s: exit %d after %v", r.cmd, r.code, r.elapsed.Round(time.Millisecond))
	if r.timedOut {
		s += " (TIMED OUT)"
	}
	if r.err != nil && r.code < 0 {
		s += fmt.Sprintf(" (%v)", r.err)
	}
	if len(r.stderr) > 0 {
		s += "\nstderr: " + truncate(string(r.stderr), 2000)
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// run runs name with args under timeout. Children get only stdin, stdout
// and stderr (os/exec passes no other descriptor), stdin is /dev/null
// unless setup says otherwise.
func run(t testing.TB, timeout time.Duration, setup func(*exec.Cmd), name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	// On timeout, kill what the command started too (by pid), not only
	// the command: a shell's stuck child would otherwise linger.
	var killed []proc
	cmd.Cancel = func() error {
		killed = killSubtree(cmd.Process.Pid)
		return nil
	}
	if setup != nil {
		setup(cmd)
	}
	start := time.Now()
	err := cmd.Run()
	if len(killed) > 0 {
		reapProcs(t, killed, cmd.Process.Pid)
	}
	r := result{
		cmd:     strings.Join(append([]string{filepath.Base(name)}, args...), " "),
		stdout:  stdout.Bytes(),
		stderr:  stderr.Bytes(),
		err:     err,
		code:    -1,
		elapsed: time.Since(start),
	}
	r.timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	if r.timedOut {
		t.Errorf("%s", r)
	}
	return r
}

// mustRun runs a command that has to succeed and returns its stdout.
func mustRun(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	r := run(t, cmdTimeout, nil, name, args...)
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	return r.stdout
}

// ckptfs runs the binary with args.
func ckptfs(t testing.TB, args ...string) result {
	t.Helper()
	return run(t, cmdTimeout, nil, env.bin, args...)
}

// ---- the mount ----

// mount is a running `ckptfs mount`.
type mount struct {
	dir string
	pid int // the daemon

	cmd    *exec.Cmd
	exited chan struct{} // closed once the daemon has exited and been reaped
	out    *lockedBuffer // everything the daemon printed
}

// lockedBuffer keeps what a process writes, for a test to search.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// log returns what the daemon has printed so far.
func (m *mount) log() string { return m.out.String() }

// gone reports whether the daemon has exited (and been reaped).
func (m *mount) gone() bool {
	select {
	case <-m.exited:
		return true
	default:
		return false
	}
}

// waitExit waits up to timeout for the daemon to exit, and reports whether
// it did.
func (m *mount) waitExit(timeout time.Duration) bool {
	select {
	case <-m.exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

// kill sends SIGKILL to the daemon now and waits until it is gone (reaped:
// the kernel has then aborted its FUSE connection and detached every task
// it traced). Only a mount of testMountWith may be killed.
func (m *mount) kill(t testing.TB) {
	t.Helper()
	// Through os.Process: it never signals a reused pid.
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("SIGKILL to ckptfs mount %d: %v", m.pid, err)
	}
	if !m.waitExit(stopTimeout) {
		t.Fatalf("ckptfs mount %d still runs %v after SIGKILL (state %c)", m.pid, stopTimeout, taskState(m.pid, m.pid))
	}
}

// path joins elements below the mountpoint.
func (m *mount) path(elem ...any) string {
	parts := []string{m.dir}
	for _, e := range elem {
		parts = append(parts, fmt.Sprint(e))
	}
	return filepath.Join(parts...)
}

// testMount starts `ckptfs mount DIR extra...` in a new directory, waits for
// the mount to appear and arranges, even when the test fails, for the
// daemon to be stopped with SIGTERM and the mount to be gone (umount -l as
// the last resort). The daemon's output goes to the test log.
//
// The mountpoint's parent is world-searchable so that tests with
// --allow-other can reach it as another user.
func testMount(t testing.TB, extra ...string) *mount {
	t.Helper()
	return startMount(t, false, nil, extra...)
}

// testMountWith is testMount for a daemon that may die: environ is added
// to its environment (CKPTFS_FAULT=POINT:N, see internal/fault), and the
// test may kill it (m.kill). Its cleanup accepts a daemon that is already
// gone: the mount it left is stale (every use fails with ENOTCONN) and is
// detached, and its directory removed. A daemon still alive at the end is
// stopped with SIGTERM and must exit cleanly, as testMount's.
func testMountWith(t testing.TB, environ []string, extra ...string) *mount {
	t.Helper()
	return startMount(t, true, environ, extra...)
}

func startMount(t testing.TB, mayDie bool, environ []string, extra ...string) *mount {
	t.Helper()
	parent, err := os.MkdirTemp("", "ckptfs-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	// mountinfo shows the resolved path.
	if p, err := filepath.EvalSymlinks(parent); err == nil {
		parent = p
	}
	dir := filepath.Join(parent, "m")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}

	args := append([]string{"mount", dir}, extra...)
	if env.graceFlag && !slices.Contains(extra, "--grace") {
		args = append(args, "--grace", testGrace.String())
	}
	if os.Getenv("CKPTFS_TEST_DEBUG") == "1" {
		args = append(args, "--debug")
	}
	cmd := exec.Command(env.bin, args...)
	if len(environ) > 0 {
		cmd.Env = append(os.Environ(), environ...)
	}
	logw := &lineLogger{t: t, prefix: "ckptfs mount: "}
	out := &lockedBuffer{}
	cmd.Stdout = io.MultiWriter(logw, out)
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 2 * time.Second
	// If this test binary dies, the daemon dies with it (and the kernel
	// aborts its connection, so nothing waits on it forever).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.Remove(dir)
		os.Remove(parent)
		t.Fatalf("start ckptfs mount: %v", err)
	}
	exited := make(chan struct{})
	m := &mount{dir: dir, pid: cmd.Process.Pid, cmd: cmd, exited: exited, out: out}
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	t.Cleanup(func() {
		defer logw.flush()
		if mayDie && m.gone() {
			// Killed (or killed itself at a fault point): what it
			// left mounted is stale. Detach it, never touching it.
			if mounted(dir) {
				if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
					t.Errorf("detach the stale mount %s: %v", dir, err)
				}
			}
			if mounted(dir) {
				t.Errorf("%s is STILL mounted; leaving the directory in place", dir)
				return
			}
			if err := os.Remove(dir); err != nil {
				t.Errorf("remove mountpoint: %v", err)
			}
			os.Remove(parent)
			return
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("SIGTERM to ckptfs mount: %v", err)
		}
		select {
		case <-exited:
			if waitErr != nil {
				t.Errorf("ckptfs mount exited with %v after SIGTERM, want status 0", waitErr)
			}
		case <-time.After(stopTimeout):
			t.Errorf("ckptfs mount did not exit within %v of SIGTERM; killing it", stopTimeout)
			cmd.Process.Kill()
			<-exited
		}
		if mounted(dir) {
			t.Errorf("%s is still mounted after the daemon exited; detaching it", dir)
			r := run(t, cmdTimeout, nil, "umount", "-l", dir)
			if r.err != nil {
				t.Logf("%s", r)
				if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
					t.Errorf("umount -l %s: %v", dir, err)
				}
			}
		}
		if mounted(dir) {
			t.Errorf("%s is STILL mounted; leaving the directory in place", dir)
			return
		}
		// Remove the directories only, never recursively: if anything
		// were still mounted there, nothing below it is touched.
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove mountpoint: %v", err)
		}
		os.Remove(parent)
	})

	deadline := time.Now().Add(mountTimeout)
	for !mounted(dir) {
		select {
		case <-exited:
			t.Fatalf("ckptfs mount exited before mounting %s: %v", dir, waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear in /proc/self/mountinfo within %v", dir, mountTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m
}

// mounted reports whether dir is a mount point, from /proc/self/mountinfo.
func mounted(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountinfo(f[4]) == dir {
			return true
		}
	}
	return false
}

// unescapeMountinfo undoes the octal escapes (\040 for a space...) of a
// mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ---- workloads ----

// workload is a running forest scenario.
type workload struct {
	scenario string
	root     int            // the tree to checkpoint (the READY pid)
	extra    map[string]int // the READY line's key=pid words
	cmd      *exec.Cmd      // the process the test started
}

// startWorkload runs `forest SCENARIO`, waits for its READY line and
// arranges for every process of its tree to be killed, by pid, and reaped
// when the test ends. setup, if not nil, may adjust the command (e.g. its
// credentials) before it starts.
func startWorkload(t testing.TB, scenario string, setup func(*exec.Cmd)) *workload {
	t.Helper()
	cmd := exec.Command(env.forest, scenario)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logw := &lineLogger{t: t, prefix: "forest " + scenario + ": "}
	cmd.Stderr = logw
	cmd.WaitDelay = time.Second
	// Its own process group: the tree's pgids are then its own, except
	// where a scenario changes them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if setup != nil {
		setup(cmd)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start forest %s: %v", scenario, err)
	}
	w := &workload{scenario: scenario, root: cmd.Process.Pid, extra: map[string]int{}, cmd: cmd}
	started := cmd.Process.Pid
	t.Cleanup(func() {
		killTree(t, started)
		cmd.Wait()
		logw.flush()
	})

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(readyTimeout):
		t.Fatalf("forest %s printed no READY line within %v", scenario, readyTimeout)
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "READY" {
		t.Fatalf("forest %s: want a READY line, got %q", scenario, line)
	}
	if w.root, err = strconv.Atoi(f[1]); err != nil {
		t.Fatalf("forest %s: bad READY line %q", scenario, line)
	}
	for _, kv := range f[2:] {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			t.Fatalf("forest %s: bad READY word %q", scenario, kv)
		}
		w.extra[k] = n
	}
	t.Logf("forest %s: %s", scenario, strings.TrimSpace(line))
	// A churning tree never settles; a vfork parent waits in D for good.
	if scenario != "churn" && scenario != "vfork" {
		waitQuiet(t, started)
	}
	return w
}

// waitQuiet waits until every task of the subtree rooted at pid sleeps (or
// is a zombie): after READY the root still runs for a moment on its way to
// pause(), and /proc must show the state the tree keeps while it is tested.
func waitQuiet(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		var busy []string
		for _, tk := range subtree(pid) {
			if s := taskState(tk.tgid, tk.tid); s != 'S' && s != 'Z' {
				busy = append(busy, fmt.Sprintf("%d/%d(%c)", tk.tgid, tk.tid, s))
			}
		}
		if len(busy) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workload did not settle within %v: %s", readyTimeout, strings.Join(busy, " "))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// key returns a pid of the READY line.
func (w *workload) key(t testing.TB, k string) int {
	t.Helper()
	v, ok := w.extra[k]
	if !ok {
		t.Fatalf("forest %s: READY line has no %s=", w.scenario, k)
	}
	return v
}

// proc is a process found for killing: its pid and start time (to tell it
// from a process that reused the pid).
type proc struct {
	pid   int
	start uint64
}

// killTree kills, by pid, every process of the subtree rooted at pid and
// reaps those that become our children (we are a subreaper). Pids are
// found through /proc/<pid>/task/*/children; a process is never looked up
// by name. pid itself is left for its exec.Cmd to reap.
func killTree(t testing.TB, pid int) {
	t.Helper()
	reapProcs(t, killSubtree(pid), pid)
}

// killSubtree sends SIGKILL to every process of the subtree rooted at pid
// and returns them.
func killSubtree(pid int) []proc {
	var procs []proc
	seen := map[int]bool{}
	// Collect, kill, and collect again: whatever was forked meanwhile
	// is found under the ones still dying.
	for round := 0; round < 3; round++ {
		var found []proc
		roots := []int{pid}
		for _, p := range procs {
			roots = append(roots, p.pid)
		}
		for _, r := range roots {
			for _, tk := range subtree(r) {
				if tk.tid != tk.tgid || seen[tk.tgid] {
					continue
				}
				seen[tk.tgid] = true
				// A process gone (reaped) since it was listed has no
				// start time: nothing to kill or reap, and a zero start
				// would never be told from a gone one by reapProcs.
				if st := startTime(tk.tgid); st != 0 {
					found = append(found, proc{tk.tgid, st})
				}
			}
		}
		if len(found) == 0 && round > 0 {
			break
		}
		for _, p := range found {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		procs = append(procs, found...)
	}
	return procs
}

// reapProcs waits for killed processes to be gone, reaping those that were
// reparented to us; skip is a pid some exec.Cmd reaps. A process that is
// not (yet) our child gives ECHILD: wait until it is gone from /proc or
// reparented to us.
func reapProcs(t testing.TB, procs []proc, skip int) {
	t.Helper()
	deadline := time.Now().Add(reapTimeout)
	pending := procs
	for len(pending) > 0 && time.Now().Before(deadline) {
		var still []proc
		for _, p := range pending {
			if p.pid == skip {
				continue
			}
			var ws syscall.WaitStatus
			got, err := syscall.Wait4(p.pid, &ws, syscall.WNOHANG|unix.WALL, nil)
			switch {
			case got == p.pid:
			case err == syscall.ECHILD && startTime(p.pid) != p.start:
				// Gone (reaped by its own parent or namespace init).
			default:
				still = append(still, p)
			}
		}
		pending = still
		if len(pending) > 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, p := range pending {
		t.Errorf("process %d was not reaped within %v of SIGKILL", p.pid, reapTimeout)
	}
}

// ---- processes ----

// taskID names a task (thread) in the test's pid namespace.
type taskID struct {
	tgid, tid int
}

// subtree lists every task of the subtree rooted at process pid, threads
// included, parents before children. A vanished process yields nothing.
func subtree(pid int) []taskID {
	var out []taskID
	var walk func(p int)
	seen := map[int]bool{}
	walk = func(p int) {
		if seen[p] {
			return
		}
		seen[p] = true
		tids := threads(p)
		for _, tid := range tids {
			out = append(out, taskID{p, tid})
		}
		for _, tid := range tids {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, tid))
			if err != nil {
				continue
			}
			for c := range strings.FieldsSeq(string(data)) {
				if n, err := strconv.Atoi(c); err == nil {
					walk(n)
				}
			}
		}
	}
	walk(pid)
	return out
}

// threads lists the tids of process pid, the leader first.
func threads(pid int) []int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	tids := []int{pid}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n != pid {
			tids = append(tids, n)
		}
	}
	if len(ents) == 0 {
		return nil
	}
	return tids
}

// statFields returns the fields of /proc/<tgid>/task/<tid>/stat after the
// comm: [0] is the state (field 3 of proc(5)), [k] is field k+3.
func statFields(tgid, tid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", tgid, tid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/task/%d/stat: no comm", tgid, tid)
	}
	return strings.Fields(string(data[i+1:])), nil
}

// startTime returns a process's start time (field 22 of stat), 0 if gone.
func startTime(pid int) uint64 {
	f, err := statFields(pid, pid)
	if err != nil || len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

// taskState returns a task's state letter, 0 if it is gone.
func taskState(tgid, tid int) byte {
	f, err := statFields(tgid, tid)
	if err != nil || len(f) == 0 || f[0] == "" {
		return 0
	}
	return f[0][0]
}

// assertRunning fails t if any task of the given tasks is left stopped
// (t: ptrace stop, T: job control stop) — a checkpoint must always thaw.
// The state is sampled for a while: a task may be stopped by a checkpoint
// that is still finishing, or by a snapshot of the mount used without its
// image being read through (a stat, say), which keeps the tree frozen for
// its grace period.
func assertRunning(t testing.TB, what string, tasks []taskID) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		var stopped []string
		for _, tk := range tasks {
			if s := taskState(tk.tgid, tk.tid); s == 't' || s == 'T' {
				stopped = append(stopped, fmt.Sprintf("%d/%d(%c)", tk.tgid, tk.tid, s))
			}
		}
		if len(stopped) == 0 {
			return
		}
		if attempt == 60 {
			t.Errorf("%s: tasks left stopped: %s", what, strings.Join(stopped, " "))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readWithTimeout reads a whole file in this process, failing the test if
// it takes longer than timeout. (A read stuck in FUSE cannot be
// interrupted; this at least reports it rather than stalling silently.)
func readWithTimeout(t testing.TB, name string, timeout time.Duration) ([]byte, error) {
	t.Helper()
	type res struct {
		data []byte
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		data, err := os.ReadFile(name)
		ch <- res{data, err}
	}()
	select {
	case r := <-ch:
		return r.data, r.err
	case <-time.After(timeout):
		t.Fatalf("reading %s took longer than %v", name, timeout)
		return nil, nil
	}
}

// readAll reads an open file from the start to its end.
func readAll(t testing.TB, f *os.File) []byte {
	t.Helper()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatalf("seek %s: %v", f.Name(), err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", f.Name(), err)
	}
	return data
}
