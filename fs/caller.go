package fs

import (
	"context"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
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
