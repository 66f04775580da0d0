package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// callerOf returns who made the FUSE request: the kernel's view of its
// filesystem uid/gid and thread id.
func callerOf(ctx context.Context) (checkpoint.Caller, bool) {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return checkpoint.Caller{}, false
	}
	return checkpoint.Caller{Uid: c.Uid, Gid: c.Gid, Pid: int(c.Pid)}, true
}

func isAccess(err error) bool { return errors.Is(err, checkpoint.ErrAccess) }

// errno turns an error into the errno the caller's system call returns.
func errno(err error) syscall.Errno {
	return syscall.Errno(checkpoint.Errno(err))
}

// errInterrupted: the caller's request was interrupted (the kernel sent
// FUSE_INTERRUPT because the caller got a signal, SIGKILL included), so
// the handler stopped waiting. Until it answers, a killed caller could not
// die.
var errInterrupted = fmt.Errorf("request interrupted: %w", syscall.EINTR)

// killedBy returns the signal a task is dying of, if it is: it is exiting
// (PF_EXITING in the flags, field 9 of /proc/<tid>/stat) with the exit code
// of a death by signal (field 52, set before the task closes its files).
// A task that exits normally closes its files on the way out as well; a
// killed one only gives them up.
func killedBy(tid int) syscall.Signal {
	data, err := os.ReadFile(procfs.Root + "/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(data[i+1:])) // from field 3, the state
	if len(fields) < 50 {
		return 0
	}
	flags, err1 := strconv.ParseUint(fields[9-3], 10, 64)
	code, err2 := strconv.ParseInt(fields[52-3], 10, 64)
	if err1 != nil || err2 != nil || flags&pfExiting == 0 {
		return 0
	}
	return syscall.Signal(code & 0x7f)
}

// pfExiting is the kernel's PF_EXITING task flag.
const pfExiting = 0x4
