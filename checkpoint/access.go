package checkpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// Caller is whoever asks for a checkpoint through the filesystem: the
// credentials and thread id the kernel put in the FUSE request.
type Caller struct {
	Uid, Gid uint32 // filesystem uid and gid
	Pid      int    // thread id, in the daemon's pid namespace
}

// PtraceCreds are the facts about a task that decide who may ptrace it.
type PtraceCreds struct {
	Uid, Gid [3]int // real, effective, saved
	CapPrm   uint64
	Dumpable bool
}

// ptraceCredsOf reads the ptrace-relevant credentials of a task.
func ptraceCredsOf(tgid int, st *procfs.Status) PtraceCreds {
	c := PtraceCreds{CapPrm: st.CapPrm}
	copy(c.Uid[:], st.Uid[:3])
	copy(c.Gid[:], st.Gid[:3])
	// A non-dumpable task's /proc directory belongs to root: that is how
	// the kernel itself hides such a task from its owner.
	owner, err := procfs.Owner(tgid)
	c.Dumpable = err == nil && int(owner) == st.Uid[1]
	return c
}

// Access applies, for one caller, the kernel's rules for reading
// /proc/<pid>/mem (ptrace access mode ATTACH with filesystem credentials):
//
//   - CAP_SYS_PTRACE (in the daemon's user namespace) allows everything
//     but what Yama's ptrace_scope 3 forbids;
//   - otherwise the caller's fsuid must equal the task's real, effective and
//     saved uid, its fsgid likewise the gids, the task must be dumpable, and
//     its permitted capabilities must be a subset of the caller's;
//   - and Yama's ptrace_scope 1 limits this to the caller's descendants,
//     scope 2 to CAP_SYS_PTRACE.
type Access struct {
	caller     Caller
	tgid       int // the caller's process
	capPrm     uint64
	privileged bool
	scope      int
}

// Access reads what the rules need to know of the caller.
func (c Caller) Access() (*Access, error) {
	self, err := procfs.ReadStatus(c.Pid)
	if err != nil {
		return nil, fmt.Errorf("caller pid %d: %w", c.Pid, err)
	}
	return &Access{
		caller:     c,
		tgid:       self.Tgid,
		capPrm:     self.CapPrm,
		privileged: self.CapEff&(1<<unix.CAP_SYS_PTRACE) != 0 && sameUserNS(c.Pid),
		scope:      yamaScope(),
	}, nil
}

// Allow is the Options.Allow check: it refuses a task of the caller's own
// process — freezing it would stop the reader and deadlock — and applies
// the ptrace rules to the task as it is now.
func (a *Access) Allow(tgid, tid int) error {
	if tgid == a.tgid {
		return taskErr(tid, "freeze", fmt.Errorf("%w (the reader is pid %d)", ErrSelf, a.tgid))
	}
	if a.privileged && a.scope < 3 {
		return nil
	}
	st, err := procfs.ReadTaskStatus(tgid, tid)
	if gone(err) {
		return nil // exited: the freeze's next walk will not see it
	}
	if err != nil {
		return taskErr(tid, "access", err)
	}
	return a.Check(Member{TaskID{tgid, tid}, ptraceCredsOf(tgid, st)})
}

// Check applies the ptrace rules to a task as a snapshot recorded it, so
// that a snapshot taken for one reader is served to another only if that
// one could have read it too.
func (a *Access) Check(m Member) error {
	deny := func(why string, args ...any) error {
		return taskErr(m.Tid, "access", fmt.Errorf("%w: "+why, append([]any{ErrAccess}, args...)...))
	}
	switch {
	case a.scope >= 3:
		return deny("kernel.yama.ptrace_scope is 3")
	case a.privileged:
		return nil
	case a.scope == 2:
		return deny("ptrace_scope 2 needs CAP_SYS_PTRACE")
	}
	for _, id := range m.Creds.Uid {
		if uint32(id) != a.caller.Uid {
			return deny("task uids %v differ from the reader's uid %d", m.Creds.Uid, a.caller.Uid)
		}
	}
	for _, id := range m.Creds.Gid {
		if uint32(id) != a.caller.Gid {
			return deny("task gids %v differ from the reader's gid %d", m.Creds.Gid, a.caller.Gid)
		}
	}
	if !m.Creds.Dumpable {
		return deny("task is not dumpable")
	}
	if m.Creds.CapPrm&^a.capPrm != 0 {
		return deny("task has capabilities the reader lacks")
	}
	if a.scope == 1 && !isAncestor(a.tgid, m.Tgid) {
		return deny("ptrace_scope 1 allows only the reader's descendants")
	}
	return nil
}

// sameUserNS reports whether pid shares the daemon's user namespace, where
// its capabilities mean something for the tasks the daemon sees.
func sameUserNS(pid int) bool {
	a, err1 := os.Readlink(procfs.Root + "/self/ns/user")
	b, err2 := os.Readlink(procfs.Root + "/" + strconv.Itoa(pid) + "/ns/user")
	return err1 == nil && err2 == nil && a == b
}

// yamaScope reads kernel.yama.ptrace_scope; 0 when Yama is absent.
func yamaScope() int {
	data, err := os.ReadFile(procfs.Root + "/sys/kernel/yama/ptrace_scope")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

// isAncestor reports whether process anc is an ancestor of process pid.
func isAncestor(anc, pid int) bool {
	for pid > 1 {
		st, err := procfs.ReadStatus(pid)
		if err != nil {
			return false
		}
		if st.PPid == anc {
			return true
		}
		pid = st.PPid
	}
	return false
}
