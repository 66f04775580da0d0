package inject

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/ptrace"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

// The instants of a guarded task's calls at which the tracer may die, in
// the order they come.
var guardPoints = []string{
	"guard-armed", "guard-blocked", "guard-entry", "guard-call", "guard-exit",
	"guard-interrupted", "guard-unblocked", "guard-restored",
}

// taskState is what a guarded task must have back: registers, FPU state
// and blocked mask.
type taskState struct {
	regs unix.PtraceRegs
	xs   []byte
	mask uint64
}

func readState(tid int) (taskState, error) {
	var s taskState
	var err error
	if err = unix.PtraceGetRegs(tid, &s.regs); err != nil {
		return s, err
	}
	if s.xs, err = ptrace.GetXState(tid); err != nil {
		return s, err
	}
	s.mask, err = ptrace.GetSigMask(tid)
	return s, err
}

func (s taskState) diff(o taskState) string {
	if s.regs != o.regs {
		return fmt.Sprintf("registers %+v, want %+v", o.regs, s.regs)
	}
	if !bytes.Equal(s.xs, o.xs) {
		return "FPU state differs"
	}
	if s.mask != o.mask {
		return fmt.Sprintf("blocked mask %#x, want %#x", o.mask, s.mask)
	}
	return ""
}

// onTracer runs f on a goroutine locked to a thread of its own, which
// exits with it: a tracer that f can make die at any instant with
// runtime.Goexit, as a daemon killed there would.
func onTracer(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with f
		defer close(done)
		f()
	}()
	<-done
}

// victims are tasks stopped in the ways the kernel restarts differently:
// a timed sleep (ERESTART_RESTARTBLOCK), a blocking read (ERESTARTSYS),
// and a loop in user space (no call at all).
var victims = []struct {
	name string
	argv []string
	// exact: the registers at the next stop are the same after any
	// instant of death (a task that runs its own code has moved on).
	exact bool
}{
	{"nanosleep", []string{"sleep", "1000"}, true},
	{"pipe-read", []string{"cat"}, true},
	// sigsuspend runs with a temporary mask and keeps the task's own
	// aside: the task must come back to its own (SIGUSR1 blocked), which
	// it checks each time a SIGUSR1 ends its sigsuspend, and dies if not.
	{"sigsuspend", []string{"perl", "-e", `use POSIX;
		$SIG{USR1} = sub {};
		my $usr1 = POSIX::SigSet->new(SIGUSR1);
		sigprocmask(SIG_BLOCK, $usr1);
		while (1) {
			sigsuspend(POSIX::SigSet->new());
			my $now = POSIX::SigSet->new();
			sigprocmask(SIG_BLOCK, POSIX::SigSet->new(), $now);
			exit 3 unless $now->ismember(SIGUSR1);
		}`}, true},
	{"busy", []string{"sh", "-c", "while :; do :; done"}, false},
	// Its ymm registers hold patterns: a frame whose FPU state the kernel
	// did not take whole would reset their upper halves.
	{"fpu", []string{"fpsleep"}, true},
}

// TestGuardSurvivesTracerDeath lets the tracer die at every instant of a
// guarded task's calls and checks that the task runs on, with no signal
// delivered, and, where it was in a call the kernel restarts, with its
// registers, FPU state and mask exactly as they were.
func TestGuardSurvivesTracerDeath(t *testing.T) {
	testenv.NeedRoot(t)
	fpsleep := buildFPSleep(t)
	for _, v := range victims {
		if v.argv[0] == "fpsleep" {
			if fpsleep == "" {
				continue
			}
			v.argv = []string{fpsleep}
		}
		for _, at := range append(guardPoints, "none") {
			t.Run(v.name+"/"+at, func(t *testing.T) {
				pid := startVictim(t, v.argv, v.exact)
				before := dieAt(t, pid, at, guardedCalls)
				checkRunsOn(t, pid)
				if !v.exact {
					return
				}
				checkState(t, pid, before, at)
				checkRunsOn(t, pid)
				if v.name == "sigsuspend" {
					// Its sigsuspend ends; it checks its mask and waits again.
					unix.Kill(pid, unix.SIGUSR1)
					waitInCall(t, pid, before.regs)
					checkRunsOn(t, pid)
				}
			})
		}
	}
}

// dieAt seizes pid and runs calls on it from a tracer that dies at the
// instant at (or at none, when calls end; then pid is let go), and returns
// the task's state from before.
func dieAt(t *testing.T, pid int, at string, calls func(pid int) error) taskState {
	t.Helper()
	var before taskState
	var err error
	defer func() { point = func(string) {} }()
	onTracer(func() {
		if err = seizeStopped(pid); err != nil {
			return
		}
		if before, err = readState(pid); err != nil {
			return
		}
		point = func(name string) {
			if name == at {
				runtime.Goexit() // the tracer dies here
			}
		}
		err = calls(pid)
		point = func(string) {}
		if err == nil {
			err = ptrace.Detach(pid, 0)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return before
}

// checkState lets pid run back into the call it was stopped in, then
// stops it again and compares its state with before, what it had before a
// tracer died at the instant at.
func checkState(t *testing.T, pid int, before taskState, at string) {
	t.Helper()
	waitInCall(t, pid, before.regs)
	var err error
	onTracer(func() {
		defer ptrace.Detach(pid, 0)
		if err = seizeStopped(pid); err != nil {
			return
		}
		var after taskState
		if after, err = readState(pid); err != nil {
			return
		}
		if int64(before.regs.Rax) == -516 && after.regs.Orig_rax == unix.SYS_RESTART_SYSCALL {
			// ERESTART_RESTARTBLOCK: the kernel resumes the call through
			// restart_syscall.
			after.regs.Orig_rax = before.regs.Orig_rax
		}
		if d := before.diff(after); d != "" {
			err = fmt.Errorf("after the tracer died at %s: %s", at, d)
		}
	})
	if err != nil {
		t.Error(err)
	}
}

// waitInCall waits until pid sits in the system call of regs again, with
// its stack pointer, as /proc/<pid>/syscall shows it.
func waitInCall(t *testing.T, pid int, regs unix.PtraceRegs) {
	t.Helper()
	var line string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
		if err != nil {
			t.Fatal(err)
		}
		line = string(b)
		f := strings.Fields(line)
		if len(f) == 9 && (f[0] == fmt.Sprint(regs.Orig_rax) || f[0] == fmt.Sprint(unix.SYS_RESTART_SYSCALL)) &&
			f[7] == fmt.Sprintf("0x%x", regs.Rsp) {
			return
		}
	}
	t.Fatalf("victim %d is not back in syscall %d at sp %#x: /proc/%d/syscall says %q",
		pid, regs.Orig_rax, regs.Rsp, pid, line)
}

// guardedCalls guards pid and asks it what checkpoint asks: its break, a
// signal's disposition (an answer in memory), its alternate stack.
func guardedCalls(pid int) error {
	sp, err := NewSpace(pid)
	if err != nil {
		return err
	}
	task, err := Guard(sp, pid)
	if err != nil {
		return err
	}
	if _, err := task.Syscall(unix.SYS_BRK, 0); err != nil {
		task.Restore()
		return err
	}
	if _, err := task.Query(32, unix.SYS_RT_SIGACTION, uint64(unix.SIGINT), 0, task.Data(), 8); err != nil {
		task.Restore()
		return err
	}
	if _, err := task.Query(24, unix.SYS_SIGALTSTACK, 0, task.Data()); err != nil {
		task.Restore()
		return err
	}
	return task.Restore()
}

// checkRunsOn fails t unless pid is alive, untraced and not stopped, and
// was delivered no signal (a SIGTRAP would have killed it).
func checkRunsOn(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := procfs.ReadStatus(pid)
		if err != nil {
			t.Fatalf("victim %d: %v", pid, err)
		}
		switch {
		case st.State == 'Z' || st.State == 'X':
			t.Fatalf("victim %d died", pid)
		case st.TracerPid == 0 && st.State != 't' && st.State != 'T':
			return
		case time.Now().After(deadline):
			t.Fatalf("victim %d: state %c, tracer %d: not running on", pid, st.State, st.TracerPid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startVictim starts argv, killed and reaped when the test ends, and lets
// it settle into what it does: with sleeps, until it sleeps in a call.
func startVictim(t *testing.T, argv []string, sleeps bool) int {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	if argv[0] == "cat" {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = r
		t.Cleanup(func() { w.Close() })
		defer r.Close()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	pid := cmd.Process.Pid
	if !sleeps {
		time.Sleep(30 * time.Millisecond)
		return pid
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := procfs.ReadStatus(pid)
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
		if err == nil && st.State == 'S' && len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("victim %v did not settle in a call", argv)
		}
	}
}

// buildFPSleep compiles testdata/fpsleep.c, or says why the FPU victim
// cannot run here and returns "".
func buildFPSleep(t *testing.T) string {
	if !cpu.X86.HasAVX2 {
		t.Log("no AVX2 on this CPU: the FPU victim does not run")
		return ""
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Log("no gcc: the FPU victim does not run")
		return ""
	}
	bin := filepath.Join(t.TempDir(), "fpsleep")
	if out, err := exec.Command(cc, "-O1", "-mavx2", "-o", bin, "testdata/fpsleep.c").CombinedOutput(); err != nil {
		t.Fatalf("compile testdata/fpsleep.c: %v\n%s", err, out)
	}
	return bin
}
