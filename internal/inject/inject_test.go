package inject

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/ptrace"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

func TestInjectIntoSleepingTask(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startSleep(t) // let it reach nanosleep

	tr := ptrace.NewTracer()
	defer tr.Close()
	var addr uint64
	err := tr.Do(func() error {
		if err := seizeStopped(pid); err != nil {
			return err
		}
		task, err := New(pid)
		if err != nil {
			return err
		}
		got, err := task.Syscall(unix.SYS_GETPID)
		if err != nil {
			return err
		}
		if int(got) != pid {
			t.Errorf("injected getpid = %d, want %d", got, pid)
		}
		addr, err = task.Syscall(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return err
		}
		want := []byte("written by the tracer")
		if err := WriteMem(pid, addr, want); err != nil {
			return err
		}
		got2 := make([]byte, len(want))
		if err := ReadMem(pid, addr, got2); err != nil {
			return err
		}
		if !bytes.Equal(got2, want) {
			t.Errorf("read back %q, want %q", got2, want)
		}
		if !mapped(t, pid, addr) {
			t.Errorf("mmap result %#x is not in /proc/%d/maps", addr, pid)
		}
		if _, err := task.Syscall(unix.SYS_MUNMAP, addr, 4096); err != nil {
			return err
		}
		// A bad call reports its errno.
		if _, err := task.Syscall(unix.SYS_CLOSE, 1<<20); !errors.Is(err, unix.EBADF) {
			t.Errorf("close(bad fd) = %v, want EBADF", err)
		}
		if err := task.Restore(); err != nil {
			return err
		}
		return ptrace.Detach(pid, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if mapped(t, pid, addr) {
		t.Errorf("munmap'ed page %#x still mapped", addr)
	}
	// The task resumed its own sleep: it is alive and not stopped.
	time.Sleep(20 * time.Millisecond)
	st, err := procfs.ReadStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != 'S' || st.TracerPid != 0 {
		t.Errorf("after release: state %c tracer %d, want S and none", st.State, st.TracerPid)
	}
}

func mapped(t *testing.T, pid int, addr uint64) bool {
	maps, err := procfs.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if m.Start <= addr && addr < m.End {
			return true
		}
	}
	return false
}

func TestBatch(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startSleep(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	err := tr.Do(func() error {
		if err := seizeStopped(pid); err != nil {
			return err
		}
		defer ptrace.Detach(pid, 0)
		task, err := New(pid)
		if err != nil {
			return err
		}
		defer task.Restore()
		area, err := task.Syscall(unix.SYS_MMAP, 0, 8192, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return err
		}
		defer task.Syscall(unix.SYS_MUNMAP, area, 8192)
		mem, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/mem", os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer mem.Close()
		if _, err := mem.WriteAt(BatchCode, int64(area)); err != nil {
			return err
		}
		calls := []Call{{Nr: unix.SYS_GETPID}, {Nr: unix.SYS_GETPPID}, {Nr: unix.SYS_CLOSE, Args: [6]uint64{1 << 20}}, {Nr: unix.SYS_GETPID}}
		res, err := task.Batch(mem, area, area+4096, calls)
		if !errors.Is(err, unix.EBADF) || !strings.Contains(err.Error(), "call 3 of 4") {
			t.Errorf("batch error %v, want EBADF at call 3", err)
		}
		if len(res) != 4 || int(res[0]) != pid || int(res[1]) != os.Getpid() {
			t.Errorf("results %v, want [%d %d ...]", res, pid, os.Getpid())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if st, err := procfs.ReadStatus(pid); err != nil || st.State != 'S' {
		t.Errorf("after the batch: %v %v, want the task sleeping on", st, err)
	}
}

// startSleep starts a sleep, killed when the test ends, and lets it reach
// its nanosleep.
func startSleep(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(50 * time.Millisecond)
	return cmd.Process.Pid
}

// seizeStopped attaches to pid and stops it; on the tracer's thread.
func seizeStopped(pid int) error {
	if err := ptrace.Seize(pid, unix.PTRACE_O_TRACESYSGOOD); err != nil {
		return err
	}
	if err := ptrace.Interrupt(pid); err != nil {
		return err
	}
	_, err := ptrace.WaitStop(context.Background(), pid, 5*time.Second)
	return err
}
