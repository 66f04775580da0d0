package tests

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The sentinel (workload/sentinel.c) is a tree that checks itself all the
// time: registers and FPU state, blocked masks, memory, the calls it sleeps
// in, and every signal it receives, recorded in a status file the test
// reads without talking to it. See sentinel.c for what each member does
// and for the status file's layout, which sentinelStatus mirrors.

// Status slots (sentinel.c's P_*, X_*, T_*).
const (
	pRegs = iota // the root's register loop
	pSleep
	pMem
	pChild // the child's register loop
	pMain
	pRead
)

var progressNames = []string{"root register loop", "sleeper", "memory checker", "child register loop", "main thread's ppoll", "reader"}

var problemNames = []string{"registers changed", "blocked mask changed", "memory changed", "a call failed with EINTR", "a call returned that never should", "setup"}

var tidNames = []string{"main", "s-regs", "s-sleep", "s-read", "s-mem", "child"}

const (
	tMain  = 0
	tChild = 5
)

// sentinelStatus is the decoded status file.
type sentinelStatus struct {
	Ready     bool
	Pid       int
	Child     int
	VecBits   int
	Progress  [8]uint64
	Problems  [8]uint64
	Tids      [8]int
	Masks     [8]uint64
	PpollMask uint64
	Signals   [65]uint64
	Message   string
}

func parseSentinelStatus(b []byte) (*sentinelStatus, error) {
	if len(b) < 4096 || string(b[:8]) != "SNTNL001" {
		return nil, fmt.Errorf("not a sentinel status file (%d bytes, magic %q)", len(b), b[:min(8, len(b))])
	}
	le := binary.LittleEndian
	s := &sentinelStatus{
		Ready:     le.Uint64(b[8:]) == 1,
		Pid:       int(int32(le.Uint32(b[16:]))),
		Child:     int(int32(le.Uint32(b[20:]))),
		VecBits:   int(int32(le.Uint32(b[24:]))),
		PpollMask: le.Uint64(b[256:]),
	}
	for i := range 8 {
		s.Progress[i] = le.Uint64(b[32+8*i:])
		s.Problems[i] = le.Uint64(b[96+8*i:])
		s.Tids[i] = int(int32(le.Uint32(b[160+4*i:])))
		s.Masks[i] = le.Uint64(b[192+8*i:])
	}
	for i := range 65 {
		s.Signals[i] = le.Uint64(b[512+8*i:])
	}
	msg := b[1536:2048]
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	s.Message = string(msg)
	return s, nil
}

// sentinel is a running sentinel tree.
type sentinel struct {
	pid, child int
	statusPath string
	cmd        *exec.Cmd
	tasks      []taskID // every task, as at READY
}

// startSentinel starts a sentinel, waits for READY and for every member to
// be seen making progress, and arranges for its tree to be killed, by pid,
// and reaped when the test ends.
func startSentinel(t testing.TB) *sentinel {
	t.Helper()
	dir, err := os.MkdirTemp(env.workDir, "sentinel-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &sentinel{statusPath: filepath.Join(dir, "status")}
	cmd := exec.Command(env.sentinel, s.statusPath)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logw := &lineLogger{t: t, prefix: "sentinel: "}
	cmd.Stderr = logw
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sentinel: %v", err)
	}
	s.cmd, s.pid = cmd, cmd.Process.Pid
	t.Cleanup(func() {
		killTree(t, s.pid)
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
		t.Fatalf("the sentinel printed no READY line within %v", readyTimeout)
	}
	var pid int
	if n, _ := fmt.Sscanf(line, "READY %d child=%d", &pid, &s.child); n != 2 || pid != s.pid {
		t.Fatalf("the sentinel (pid %d) printed %q, want READY <pid> child=<pid>", s.pid, line)
	}
	st := s.status(t)
	if !st.Ready || st.Pid != s.pid || st.Child != s.child {
		t.Fatalf("sentinel status after READY: %+v", st)
	}
	s.tasks = subtree(s.pid)
	var ids []int
	for _, tk := range s.tasks {
		ids = append(ids, tk.tid)
	}
	for i, tid := range st.Tids[:6] {
		if !slices.Contains(ids, tid) {
			t.Fatalf("sentinel member %s (tid %d) is not in its tree %v", tidNames[i], tid, s.tasks)
		}
	}
	if len(s.tasks) != 6 {
		t.Fatalf("the sentinel's tree has %d tasks, want 6: %v", len(s.tasks), s.tasks)
	}
	t.Logf("sentinel: %s (%d tasks, %d-bit vector registers checked)", strings.TrimSpace(line), len(s.tasks), st.VecBits)
	s.assertUnharmed(t, "at start")
	return s
}

// status reads the status file.
func (s *sentinel) status(t testing.TB) *sentinelStatus {
	t.Helper()
	b, err := os.ReadFile(s.statusPath)
	if err != nil {
		t.Fatalf("sentinel status: %v", err)
	}
	st, err := parseSentinelStatus(b)
	if err != nil {
		t.Fatalf("sentinel status %s: %v", s.statusPath, err)
	}
	return st
}

// settleTimeout bounds the wait for a tree whose tracer just died to be
// running again: each task let go out of a ptrace stop has to be scheduled
// to leave it (and, at some instants of a guarded call, to run the
// sigreturn that gives it back its mask).
const settleTimeout = 3 * time.Second

// progressTimeout bounds the wait for every member of the sentinel to be
// seen making progress (the memory checker moves every 100 ms).
const progressTimeout = 10 * time.Second

// taskStatus reads the fields of /proc/<tgid>/task/<tid>/status.
func taskStatus(tgid, tid int) (map[string]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", tgid, tid))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out, nil
}

func hexField(f map[string]string, k string) uint64 {
	v, err := strconv.ParseUint(f[k], 16, 64)
	if err != nil {
		return ^uint64(0)
	}
	return v
}

// sigNames names the signals of a mask (bit n-1 for signal n).
func sigNames(mask uint64) string {
	var names []string
	for sig := 1; sig <= 64; sig++ {
		if mask&(1<<(sig-1)) != 0 {
			names = append(names, sigName(sig))
		}
	}
	return strings.Join(names, ",")
}

func sigName(sig int) string {
	if n := unix.SignalName(syscall.Signal(sig)); n != "" {
		return n
	}
	return fmt.Sprintf("SIG%d", sig)
}

// harmNow lists what is wrong with the sentinel's tasks as /proc shows
// them now: a task gone, dead, stopped or traced, a signal pending, a
// blocked mask other than the one the member set.
func (s *sentinel) harmNow(st *sentinelStatus) []string {
	var bad []string
	now := subtree(s.pid)
	for _, tk := range s.tasks {
		f, err := taskStatus(tk.tgid, tk.tid)
		if err != nil {
			bad = append(bad, fmt.Sprintf("task %d/%d is gone", tk.tgid, tk.tid))
			continue
		}
		state := taskState(tk.tgid, tk.tid)
		switch state {
		case 'Z', 'X', 0:
			bad = append(bad, fmt.Sprintf("task %d/%d is dead (state %c)", tk.tgid, tk.tid, state))
			continue
		case 't', 'T':
			bad = append(bad, fmt.Sprintf("task %d/%d is stopped (state %c)", tk.tgid, tk.tid, state))
		}
		if tp := f["TracerPid"]; tp != "0" {
			bad = append(bad, fmt.Sprintf("task %d/%d is traced by %s", tk.tgid, tk.tid, tp))
		}
		if p := hexField(f, "SigPnd"); p != 0 {
			bad = append(bad, fmt.Sprintf("task %d/%d has signals pending: %s", tk.tgid, tk.tid, sigNames(p)))
		}
		if p := hexField(f, "ShdPnd"); p != 0 {
			bad = append(bad, fmt.Sprintf("process %d has signals pending: %s", tk.tgid, sigNames(p)))
		}
		blk := hexField(f, "SigBlk")
		for slot, tid := range st.Tids[:6] {
			if tid != tk.tid {
				continue
			}
			if blk != st.Masks[slot] && !(slot == tMain && blk == st.PpollMask) {
				bad = append(bad, fmt.Sprintf("task %d/%d (%s) blocks %#x [%s], it set %#x [%s]",
					tk.tgid, tk.tid, tidNames[slot], blk, sigNames(blk), st.Masks[slot], sigNames(st.Masks[slot])))
			}
		}
	}
	if len(now) != len(s.tasks) {
		bad = append(bad, fmt.Sprintf("the tree has %d tasks, had %d: %v", len(now), len(s.tasks), now))
	}
	return bad
}

// findings lists what the sentinel found itself, and the signals it got.
func (st *sentinelStatus) findings() []string {
	var bad []string
	for i, n := range st.Problems {
		if n != 0 {
			name := fmt.Sprintf("problem %d", i)
			if i < len(problemNames) {
				name = problemNames[i]
			}
			bad = append(bad, fmt.Sprintf("the sentinel found %s (%d times)", name, n))
		}
	}
	if len(bad) > 0 {
		bad = append(bad, fmt.Sprintf("its latest finding: %q", st.Message))
	}
	for sig, n := range st.Signals {
		if n != 0 {
			bad = append(bad, fmt.Sprintf("the sentinel received %s %d times", sigName(sig), n))
		}
	}
	if st.Progress[pRead] != 1 {
		bad = append(bad, fmt.Sprintf("the reader entered read() %d times, want once (it never returns)", st.Progress[pRead]))
	}
	return bad
}

// assertUnharmed fails t unless every task of the sentinel's tree is
// alive, running (not stopped, not traced), with no signal pending or
// received and its own blocked mask, every member makes progress, and no
// member has found its registers, FPU state, mask, memory or calls
// changed. A tree whose tracer has just died gets settleTimeout to be let
// go; progress is waited for, within progressTimeout.
func (s *sentinel) assertUnharmed(t testing.TB, what string) {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	var harm []string
	for {
		harm = s.harmNow(s.status(t))
		if len(harm) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(harm) > 0 {
		t.Errorf("%s: the sentinel's tree is harmed:\n\t%s", what, strings.Join(harm, "\n\t"))
	}
	first := s.status(t)
	stuck := []int{pRegs, pSleep, pMem, pChild, pMain}
	deadline = time.Now().Add(progressTimeout)
	var last *sentinelStatus
	for {
		time.Sleep(100 * time.Millisecond)
		last = s.status(t)
		stuck = slices.DeleteFunc(stuck, func(i int) bool { return last.Progress[i] > first.Progress[i] })
		if len(stuck) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, i := range stuck {
		t.Errorf("%s: the sentinel's %s made no progress in %v (count %d)", what, progressNames[i], progressTimeout, last.Progress[i])
	}
	if bad := last.findings(); len(bad) > 0 {
		t.Errorf("%s:\n\t%s", what, strings.Join(bad, "\n\t"))
	}
	if len(harm) == 0 {
		// Again, after the progress: nothing went wrong meanwhile.
		if harm = s.harmNow(last); len(harm) > 0 {
			t.Errorf("%s: the sentinel's tree is harmed:\n\t%s", what, strings.Join(harm, "\n\t"))
		}
	}
}

// frozen reports whether every task of the sentinel is in a ptrace stop.
func (s *sentinel) frozen() bool {
	return len(stoppedTasks(s.tasks)) == len(s.tasks)
}

// readImageBounded reads f from its current offset up to n bytes (all
// that is left if n < 0) in 1 MiB reads, failing t if that takes longer
// than timeout. It returns the bytes read and the error that ended the
// reading (nil when n bytes, or io.EOF, were reached).
func readImageBounded(t testing.TB, f *os.File, n int64, timeout time.Duration) (int64, error) {
	t.Helper()
	type res struct {
		n   int64
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var src io.Reader = f
		if n >= 0 {
			src = io.LimitReader(f, n)
		}
		k, err := io.CopyBuffer(io.Discard, src, make([]byte, 1<<20))
		ch <- res{k, err}
	}()
	select {
	case r := <-ch:
		return r.n, r.err
	case <-time.After(timeout):
		t.Fatalf("reading %s took longer than %v", f.Name(), timeout)
		return 0, nil
	}
}

// checkpointAgain checkpoints the sentinel through a new mount, reading
// its whole image, and checks that the tree is still unharmed after it:
// nothing a dead daemon did keeps a new one from freezing it (a task left
// traced could not be seized again).
func (s *sentinel) checkpointAgain(t testing.TB) {
	t.Helper()
	m := testMount(t)
	f, err := os.Open(m.path(s.pid, "image"))
	if err != nil {
		t.Fatalf("checkpoint the sentinel again through a new mount: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	n, err := readImageBounded(t, f, -1, cmdTimeout)
	if err != nil || n != fi.Size() {
		t.Fatalf("checkpoint the sentinel again: read %d of %d bytes: %v", n, fi.Size(), err)
	}
	f.Close()
	s.assertUnharmed(t, "after a new checkpoint")
}

// ---- the sentinel's own test ----

// tamper stops task tid with ptrace (seize, interrupt), runs fn on it in
// its stop, and lets it go; all on one locked OS thread, as ptrace wants.
func tamper(t *testing.T, tid int, fn func(tid int) error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		errc <- func() error {
			if err := unix.PtraceSeize(tid); err != nil {
				return fmt.Errorf("PTRACE_SEIZE %d: %w", tid, err)
			}
			defer unix.PtraceDetach(tid)
			if err := unix.PtraceInterrupt(tid); err != nil {
				return fmt.Errorf("PTRACE_INTERRUPT %d: %w", tid, err)
			}
			var ws unix.WaitStatus
			if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
				return fmt.Errorf("wait for %d to stop: %w", tid, err)
			}
			return fn(tid)
		}()
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(cmdTimeout):
		t.Fatalf("tampering with task %d took longer than %v", tid, cmdTimeout)
	}
}

// fpregs runs PTRACE_GETFPREGS or PTRACE_SETFPREGS: the 512-byte FXSAVE
// area (MXCSR at 24, xmm<n> at 160+16n).
func fpregs(req int, tid int, buf *[512]byte) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), 0, uintptr(unsafe.Pointer(&buf[0])), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// heapOf finds the sentinel's 64 MiB heap area in /proc/<pid>/maps.
func heapOf(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 || f[1] != "rw-p" {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && b-a == 64<<20 {
			return a
		}
	}
	t.Fatalf("no 64 MiB heap area in the sentinel's maps:\n%s", data)
	return 0
}

// expectDetected waits until the sentinel (or the look at /proc that
// assertUnharmed takes) reports something containing want.
func (s *sentinel) expectDetected(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(progressTimeout)
	var all []string
	for {
		st := s.status(t)
		all = append(s.harmNow(st), st.findings()...)
		for _, f := range all {
			if strings.Contains(f, want) {
				t.Logf("detected: %s", f)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("within %v the sentinel did not detect %q; it reports:\n\t%s", progressTimeout, want, strings.Join(all, "\n\t"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashSentinelSelfCheck proves that the sentinel sees each kind of
// harm the crash tests look for, done to it on purpose: without this, a
// crash test could pass because its workload noticed nothing.
func TestCrashSentinelSelfCheck(t *testing.T) {
	requireEnv(t)
	for _, c := range []struct {
		name string
		do   func(t *testing.T, s *sentinel, st *sentinelStatus)
		want string
	}{
		{"signal", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			syscall.Kill(s.pid, syscall.SIGWINCH)
		}, "received SIGWINCH"},
		{"child-signal", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			syscall.Kill(s.child, syscall.SIGURG)
		}, "received SIGURG"},
		{"blocked-signal-pending", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			unix.Tgkill(s.pid, st.Tids[2], unix.SIGUSR2) // s-sleep blocks SIGUSR2
		}, "signals pending: SIGUSR2"},
		{"stopped", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			syscall.Kill(s.child, syscall.SIGSTOP)
			t.Cleanup(func() { syscall.Kill(s.child, syscall.SIGCONT) })
		}, "is stopped (state T)"},
		{"traced", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			done, release := make(chan error), make(chan struct{})
			go func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				err := unix.PtraceSeize(s.child)
				done <- err
				<-release
				if err == nil {
					unix.PtraceDetach(s.child)
				}
			}()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { close(release) })
		}, "is traced by"},
		{"register", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			tamper(t, st.Tids[1], func(tid int) error {
				var r unix.PtraceRegs
				if err := unix.PtraceGetRegs(tid, &r); err != nil {
					return err
				}
				r.R12 ^= 1
				return unix.PtraceSetRegs(tid, &r)
			})
		}, "root's register loop: r12 changed"},
		{"vector-register", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			tamper(t, s.child, func(tid int) error {
				var fx [512]byte
				if err := fpregs(unix.PTRACE_GETFPREGS, tid, &fx); err != nil {
					return err
				}
				fx[160+16*5] ^= 1
				return fpregs(unix.PTRACE_SETFPREGS, tid, &fx)
			})
		}, "mm5 changed"},
		{"mxcsr", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			tamper(t, st.Tids[1], func(tid int) error {
				var fx [512]byte
				if err := fpregs(unix.PTRACE_GETFPREGS, tid, &fx); err != nil {
					return err
				}
				binary.LittleEndian.PutUint32(fx[24:], 0x1f80)
				return fpregs(unix.PTRACE_SETFPREGS, tid, &fx)
			})
		}, "mxcsr changed"},
		{"mask", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			tamper(t, st.Tids[2], func(tid int) error {
				mask := st.Masks[2] | 1<<(syscall.SIGHUP-1)
				_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SETSIGMASK, uintptr(tid), 8, uintptr(unsafe.Pointer(&mask)), 0, 0)
				if e != 0 {
					return e
				}
				return nil
			})
		}, "sleeper: blocked mask"},
		{"restart-lost", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			// The reader sleeps in read(): stopped there, the call is to
			// be restarted (-ERESTARTSYS); make it fail with EINTR.
			tamper(t, st.Tids[3], func(tid int) error {
				var r unix.PtraceRegs
				if err := unix.PtraceGetRegs(tid, &r); err != nil {
					return err
				}
				if r.Orig_rax != unix.SYS_READ || int64(r.Rax) != -512 {
					return fmt.Errorf("the reader is not stopped in read() to be restarted: orig_rax %d rax %d", int64(r.Orig_rax), int64(r.Rax))
				}
				r.Rax = uint64(^uintptr(syscall.EINTR) + 1)
				return unix.PtraceSetRegs(tid, &r)
			})
		}, "reader: read failed with EINTR"},
		{"memory", func(t *testing.T, s *sentinel, st *sentinelStatus) {
			f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", s.pid), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{1, 2, 3, 4, 5, 6, 7, 8}, int64(heapOf(t, s.pid)+40<<20)); err != nil {
				t.Fatal(err)
			}
		}, "memory changed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startSentinel(t)
			c.do(t, s, s.status(t))
			s.expectDetected(t, c.want)
		})
	}
}
