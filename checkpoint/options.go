package checkpoint

import (
	"fmt"
	"os"
	"time"

	"github.com/ckptfs/ckptfs/image"
)

// Mode chooses how the tree is recorded; ModeAuto lets the tree decide.
type Mode int

const (
	// ModeAuto: container when the root is the init of its pid namespace
	// and everything the tree refers to lies inside it, subtree otherwise.
	ModeAuto Mode = iota
	ModeContainer
	ModeSubtree
)

// ParseMode reads "auto", "container" or "subtree".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "auto", "":
		return ModeAuto, nil
	case "container":
		return ModeContainer, nil
	case "subtree":
		return ModeSubtree, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want auto, container or subtree)", s)
}

func (m Mode) String() string {
	switch m {
	case ModeContainer:
		return image.ModeContainer.String()
	case ModeSubtree:
		return image.ModeSubtree.String()
	}
	return "auto"
}

// Options tune a checkpoint.
type Options struct {
	Mode Mode
	// Allow vets every task before it is frozen (tgid and tid as seen from
	// the checkpointer); an error aborts the checkpoint. The filesystem uses
	// it to apply the kernel's ptrace rules to the reader of a file.
	Allow func(tgid, tid int) error
	// ReplaceExternal records descriptors that lead outside the tree
	// (sockets, terminals, pipes to other processes) to be replaced by
	// /dev/null at restore, instead of refusing the checkpoint.
	ReplaceExternal bool
	// StopTimeout bounds the wait for one task to stop; default 5 s.
	StopTimeout time.Duration
	// CopyLimit bounds the memory a laid-out snapshot duplicates (pages
	// read while the tree is frozen, pages the tree writes that its
	// copies still share: copy_limit.go); 0 is DefaultCopyLimit.
	CopyLimit int64
	// Hold keeps a laid-out tree frozen until Thaw, its pages read from
	// the tree itself as they are read, instead of copying them so that
	// the tree runs on at once (Lay, copy.go).
	Hold bool
	// Logf, when set, is told what a checkpoint chose that its result
	// does not say (a process kept frozen, and why).
	Logf func(format string, args ...any)
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

func (o *Options) stopTimeout() time.Duration {
	if o.StopTimeout > 0 {
		return o.StopTimeout
	}
	return 5 * time.Second
}

// allow refuses the checkpointer's own process — it cannot trace itself,
// and would stop the very thread that serves the read — then asks Allow.
func (o *Options) allow(tgid, tid int) error {
	if tgid == os.Getpid() {
		return taskErr(tid, "freeze", fmt.Errorf("%w (ckptfs is pid %d)", ErrSelf, tgid))
	}
	if o.Allow != nil {
		return o.Allow(tgid, tid)
	}
	return nil
}
