package procfs

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSched(t *testing.T) {
	line := "42 (a (b) c) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 -2 7 1 0 12345 0 0 " +
		"18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 3 1 0 0 0 0 0 0 0 0 0 0 0\n"
	s, err := parseSched([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if *s != (Sched{Nice: 7, RTPriority: 3, Policy: unix.SCHED_FIFO}) {
		t.Errorf("got %+v", s)
	}
	if _, err := parseSched([]byte("42 (x) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345\n")); err == nil {
		t.Error("a stat line without the policy field accepted")
	}
}

// A thread's fields are its own: this one switches to SCHED_BATCH at nice 3.
func TestReadTaskSched(t *testing.T) {
	done := make(chan struct{})
	var s *Sched
	var err error
	go func() {
		// The thread dies with the goroutine: nobody else runs on it.
		runtime.LockOSThread()
		defer close(done)
		tid := unix.Gettid()
		if err = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH, Nice: 3}, 0); err != nil {
			return
		}
		s, err = ReadTaskSched(os.Getpid(), tid)
	}()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if *s != (Sched{Nice: 3, Policy: unix.SCHED_BATCH}) {
		t.Errorf("got %+v, want SCHED_BATCH at nice 3", s)
	}
}
