package fs

import (
	"os"
	"strconv"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// The mount does not ask the kernel to check permissions
// (default_permissions): the process directories apply the ptrace rules
// to each reader (docs/DESIGN.md §1), which a mode cannot express, and a
// caller with CAP_SYS_PTRACE alone may read another user's checkpoint. So
// every node checks its caller itself; a file of restore/ does so as the
// kernel would for its owner and mode (owner.go), and its mode shows the
// rule.

// hasCap reports whether thread tid has capability c in effect, in the
// daemon's user namespace (a capability of another namespace means
// nothing for files the daemon serves). A variable, for tests.
var hasCap = func(tid int, c uint) bool {
	st, err := procfs.ReadStatus(tid)
	if err != nil || st.CapEff&(1<<c) == 0 {
		return false
	}
	self, err1 := os.Readlink(procfs.Root + "/self/ns/user")
	its, err2 := os.Readlink(procfs.Root + "/" + strconv.Itoa(tid) + "/ns/user")
	return err1 == nil && err2 == nil && self == its
}

// actsAsOwner reports whether caller may do to a file owned by uid what
// its owner may: it is the owner, or it has one of caps (CAP_DAC_OVERRIDE
// to read or write anyone's file, CAP_DAC_READ_SEARCH to read one,
// CAP_FOWNER to remove one from a sticky directory: the kernel's rules).
func actsAsOwner(caller checkpoint.Caller, uid uint32, caps ...uint) bool {
	if caller.Uid == uid {
		return true
	}
	for _, c := range caps {
		if hasCap(caller.Pid, c) {
			return true
		}
	}
	return false
}
