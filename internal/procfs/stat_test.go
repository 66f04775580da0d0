package procfs

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStatSched(t *testing.T) {
	line := "42 (a (b) c) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 -2 7 1 0 12345 0 0 " +
		"18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 3 1 0 0 0 0 0 0 0 0 0 0 0\n"
	s, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if s.Nice != 7 || s.RTPriority != 3 || s.Policy != unix.SCHED_FIFO || s.PPid != 1 {
		t.Errorf("got %+v", s)
	}
	if _, err := parseStat([]byte("42 (x) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345\n")); err == nil {
		t.Error("a stat line without the policy field accepted")
	}
}

// A thread's fields are its own: this one switches to SCHED_BATCH at nice 3.
func TestReadTaskStatSched(t *testing.T) {
	done := make(chan struct{})
	var s *Stat
	var err error
	go func() {
		// The thread dies with the goroutine: nobody else runs on it.
		runtime.LockOSThread()
		defer close(done)
		tid := unix.Gettid()
		if err = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH, Nice: 3}, 0); err != nil {
			return
		}
		s, err = ReadTaskStat(os.Getpid(), tid)
	}()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if s.Nice != 3 || s.Policy != unix.SCHED_BATCH || s.RTPriority != 0 {
		t.Errorf("got %+v, want SCHED_BATCH at nice 3", s)
	}
}

// Dying: a task sleeping is not; one killed and not yet reaped is.
func TestDying(t *testing.T) {
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	if Dying(pid) {
		t.Errorf("a sleeping task %d reads as dying", pid)
	}
	cmd.Process.Kill()
	for deadline := time.Now().Add(5 * time.Second); !Dying(pid); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("task %d, killed, does not read as dying", pid)
		}
	}
}
