package checkpoint

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Errors a caller can test with errors.Is. Each wraps the errno that the
// filesystem hands back to whoever read the file.
var (
	// ErrVanished: the root of the subtree does not exist (any more).
	ErrVanished = fmt.Errorf("checkpoint: process vanished: %w", unix.ESRCH)
	// ErrSelf: the subtree holds the caller or the checkpointer itself;
	// freezing it would deadlock.
	ErrSelf = fmt.Errorf("checkpoint: subtree holds the caller or ckptfs itself: %w", unix.EDEADLK)
	// ErrAccess: the caller may not ptrace a task of the subtree.
	ErrAccess = fmt.Errorf("checkpoint: permission denied: %w", unix.EACCES)
	// ErrOutside: container mode, but the tree refers to a pid outside the
	// root's pid namespace.
	ErrOutside = fmt.Errorf("checkpoint: pid outside the container: %w", unix.EINVAL)
	// ErrTraced: a task is already traced by someone else.
	ErrTraced = fmt.Errorf("checkpoint: task already traced: %w", unix.EBUSY)
	// ErrStuck: a task did not stop in time.
	ErrStuck = fmt.Errorf("checkpoint: task did not stop: %w", unix.ETIMEDOUT)
	// ErrVfork: a process is a vfork child still sharing its parent's
	// memory; the parent cannot stop until the child execs or exits.
	ErrVfork = fmt.Errorf("checkpoint: vfork in progress, try again once the child has called exec: %w", unix.EAGAIN)
)

// TaskError says which task a checkpoint failed on.
type TaskError struct {
	Pid  int    // the task's pid (thread id) in the checkpointer's namespace
	What string // what was being done
	Err  error
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("pid %d: %s: %v", e.Pid, e.What, e.Err)
}

func (e *TaskError) Unwrap() error { return e.Err }

func taskErr(pid int, what string, err error) error {
	return &TaskError{Pid: pid, What: what, Err: err}
}

// Errno is the errno that stands for err at a system-call boundary such as
// the filesystem: the first errno err wraps, else EIO.
func Errno(err error) unix.Errno {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return unix.EIO
}

// ErrUnsupported: the tree holds something ckptfs cannot capture faithfully
// yet; an image that restored it wrongly would be worse than none.
var ErrUnsupported = fmt.Errorf("checkpoint: not supported: %w", unix.EOPNOTSUPP)

// ErrExternal: a descriptor leads outside the tree (a socket, a terminal, a
// pipe to another process); restoring it faithfully is impossible, so the
// checkpoint refuses unless asked to replace such descriptors.
var ErrExternal = fmt.Errorf("checkpoint: descriptor leads outside the tree (ask to replace it): %w", unix.EOPNOTSUPP)
