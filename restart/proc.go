package restart

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/inject"
	"github.com/ckptfs/ckptfs/internal/ptrace"
)

// proc is a task of the forest under construction: stopped, traced by the
// restorer's tracer thread, and driven by injected system calls. Every
// method must run on that thread.
type proc struct {
	tid int // in the restorer's pid namespace
	inj *inject.Task
}

// traceOptions make every task the forest's tasks create traced from birth,
// kill the whole half-built forest if the restorer dies, and tell syscall
// stops from SIGTRAP (injected calls stop at them: internal/inject).
const traceOptions = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK |
	unix.PTRACE_O_TRACEVFORK | unix.PTRACE_O_EXITKILL | unix.PTRACE_O_TRACESYSGOOD

// seize takes over the stopped seed.
func seize(tid int) (*proc, error) {
	if err := ptrace.Seize(tid, traceOptions); err != nil {
		return nil, err
	}
	if err := ptrace.Interrupt(tid); err != nil {
		return nil, err
	}
	if _, err := ptrace.WaitStop(context.Background(), tid, 5*time.Second); err != nil {
		return nil, err
	}
	return adopt(tid)
}

func adopt(tid int) (*proc, error) {
	inj, err := inject.New(tid)
	if err != nil {
		return nil, err
	}
	return &proc{tid: tid, inj: inj}, nil
}

// scratch is where injected calls find their in-memory arguments: below the
// stack pointer of the seed's copy, inside its stack mapping, beyond the red
// zone. Only valid before the task's own memory is restored.
func (p *proc) scratch() uint64 { return (p.inj.Saved.Rsp - 4096) &^ 63 }

// clone makes p call clone3 with flags, exit signal and set_tid (innermost
// namespace first), and returns the new task once it has stopped.
func (p *proc) clone(flags uint64, exitSignal int, setTid []int32) (*proc, error) {
	const argsSize = 88 // struct clone_args up to cgroup (CLONE_ARGS_SIZE_VER2)
	addr := p.scratch()
	buf := make([]byte, argsSize+4*len(setTid))
	le := binary.LittleEndian
	le.PutUint64(buf[0:], flags)
	le.PutUint64(buf[32:], uint64(exitSignal))
	if len(setTid) > 0 {
		le.PutUint64(buf[64:], addr+argsSize)
		le.PutUint64(buf[72:], uint64(len(setTid)))
		for i, nr := range setTid {
			le.PutUint32(buf[argsSize+4*i:], uint32(nr))
		}
	}
	if err := inject.WriteMem(p.tid, addr, buf); err != nil {
		return nil, fmt.Errorf("write clone_args: %w", err)
	}
	p.inj.Child = 0
	if _, err := p.inj.Syscall(unix.SYS_CLONE3, addr, argsSize); err != nil {
		return nil, err
	}
	if p.inj.Child == 0 {
		return nil, fmt.Errorf("clone3 reported no child")
	}
	child := p.inj.Child
	// The child starts traced, in a stop of its own.
	if _, err := ptrace.WaitStop(context.Background(), child, 5*time.Second); err != nil {
		return nil, fmt.Errorf("new task %d: %w", child, err)
	}
	return adopt(child)
}

// syscall runs one injected system call in p.
func (p *proc) syscall(nr uintptr, args ...uint64) (uint64, error) {
	return p.inj.Syscall(nr, args...)
}

// exit makes p die with the given wait status (an exit code, or a signal).
func (p *proc) exit(status int32) error {
	ws := unix.WaitStatus(status)
	if ws.Signaled() {
		// No core file: the restored zombie only has to carry the status.
		err := p.withStackArg(p.inj.Saved.Rsp, make([]byte, 16), func(zero uint64) error {
			_, err := p.syscall(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_CORE, zero, 0)
			return err
		})
		if err != nil {
			return err
		}
		return p.inj.Exit(0, int(ws.Signal()))
	}
	return p.inj.Exit(ws.ExitStatus(), 0)
}

// refreshSite finds the task's syscall instruction again: its vDSO moves
// when its (possibly shared) address space is restored.
func (p *proc) refreshSite() error {
	site, err := inject.FindSite(p.tid)
	if err != nil {
		return err
	}
	p.inj.Site = site
	return nil
}

// setComm gives the task its name back (PR_SET_NAME names the calling
// thread), passing the name below the stack pointer rsp. refresh: the
// thread's vDSO moved when its process's memory was restored.
func (p *proc) setComm(comm string, rsp uint64, refresh bool) error {
	if refresh {
		if err := p.refreshSite(); err != nil {
			return err
		}
	}
	name := make([]byte, 16)
	copy(name, comm)
	return p.withStackArg(rsp, name, func(addr uint64) error {
		_, err := p.syscall(unix.SYS_PRCTL, unix.PR_SET_NAME, addr)
		return err
	})
}
