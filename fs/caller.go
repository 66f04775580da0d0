package fs

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

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

// errInterrupted: the caller of a request is dying (see untilCallerDies),
// so the handler stopped waiting: until it answers, the caller could not
// die.
var errInterrupted = fmt.Errorf("request abandoned: its caller is dying: %w", syscall.EINTR)

// dying reports whether a caller (a thread id) is dying: procfs.Dying, or a
// test's stand-in.
var dying = procfs.Dying

// pollDying is how often the caller of an interrupted request is looked at.
const pollDying = 20 * time.Millisecond

// untilCallerDies returns the context of a FUSE request, ended only when
// its caller is dying, and a function to call when the request is served.
//
// The kernel sends FUSE_INTERRUPT (go-fuse then ends ctx) when the caller
// gets any signal it does not ignore, once per request. A caller that only
// caught one (SIGCHLD, SIGWINCH, Ctrl-Z, the Go runtime's own) expects its
// answer, not EINTR, and its retry would start a freeze over; a caller that
// is dying (SIGKILL, or any other fatal signal) cannot finish dying until
// it is answered, and must be answered at once. So after an interrupt the
// caller is watched, while the request lasts, and the context ends when it
// is found dying.
func untilCallerDies(ctx context.Context) (context.Context, func()) {
	c, known := callerOf(ctx)
	out, cancel := context.WithCancel(context.WithoutCancel(ctx))
	watched := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(watched)
		tick := time.NewTicker(pollDying)
		defer tick.Stop()
		for {
			if !known || dying(c.Pid) {
				cancel()
				return
			}
			select {
			case <-out.Done():
				return
			case <-tick.C:
			}
		}
	})
	return out, func() {
		started := !stop()
		cancel()
		if started {
			// The watch outlives no request: it ends at the cancel,
			// having looked at the caller at most once more.
			<-watched
		}
	}
}
