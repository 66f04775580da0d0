package sys

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestWaitStatus(t *testing.T) {
	for _, c := range []struct {
		ws    unix.WaitStatus
		event int
		death string
	}{
		{0x0300, 0, "exit status 3"},
		{0x0009, 0, "killed by killed"},
		{unix.WaitStatus(unix.PTRACE_EVENT_CLONE<<16 | int(unix.SIGTRAP)<<8 | 0x7f), unix.PTRACE_EVENT_CLONE, ""},
		{unix.WaitStatus(unix.PTRACE_EVENT_STOP<<16 | int(unix.SIGSTOP)<<8 | 0x7f), unix.PTRACE_EVENT_STOP, ""},
	} {
		if e := Event(c.ws); e != c.event {
			t.Errorf("Event(%#x) = %d, want %d", int(c.ws), e, c.event)
		}
		if c.death != "" {
			if d := Death(c.ws); d != c.death {
				t.Errorf("Death(%#x) = %q, want %q", int(c.ws), d, c.death)
			}
		}
	}
}

func TestRetry(t *testing.T) {
	n := 0
	err := Retry(func() error {
		if n++; n < 3 {
			return unix.EINTR
		}
		return unix.EBADF
	})
	if err != unix.EBADF || n != 3 {
		t.Errorf("Retry = %v after %d calls, want EBADF after 3", err, n)
	}
}
