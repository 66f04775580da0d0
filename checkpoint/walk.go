package checkpoint

import (
	"errors"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// taskRef names one task (thread) as the checkpointer's /proc sees it.
type taskRef struct {
	tgid, tid int
}

// walk lists the tasks of the subtree rooted at process root in tree order:
// a process, then its other threads, then its children's subtrees, each
// level sorted by pid. Parents thus come before children and leaders before
// their threads, the order TREE wants. Tasks that exit while being listed
// are skipped; only the root's disappearance is an error.
func walk(root int) ([]taskRef, error) {
	var out []taskRef
	var visit func(pid int) error
	visit = func(pid int) error {
		tids, err := procfs.Threads(pid)
		if err != nil {
			return err
		}
		out = append(out, taskRef{pid, pid})
		for _, tid := range tids {
			if tid != pid {
				out = append(out, taskRef{pid, tid})
			}
		}
		kids, err := procfs.Children(pid)
		if err != nil {
			return err
		}
		for _, kid := range kids {
			if IsCopy(kid) || lostCopy(kid) {
				continue // a snapshot's copy of pid's memory: not the tree's
			}
			if err := visit(kid); err != nil && !gone(err) {
				return err
			}
		}
		return nil
	}
	if err := visit(root); err != nil {
		if gone(err) {
			return nil, taskErr(root, "list subtree", ErrVanished)
		}
		return nil, taskErr(root, "list subtree", err)
	}
	return out, nil
}

// gone reports whether err says a /proc entry disappeared: its task exited.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH)
}
