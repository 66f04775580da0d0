package checkpoint

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/inject"
)

// taskState is what a stopped task holds beside its pages: a process's
// (leader's) address space, dispositions, attributes, resource limits and
// timers, and every thread's registers, signal state, kernel-registered
// addresses, scheduling attributes and parent-death signal.
type taskState struct {
	// Per process (thread-group leader), nil for other threads.
	mm      *image.MM
	acts    []image.SigAction
	process *image.Process
	rlimits []image.RLimit
	timers  *[3]image.ITimer
	// Per thread.
	regs    *image.Regs
	rseq    *image.RSeq
	sigs    *image.SigState
	thread  *image.Thread
	attr    *image.ThreadAttr
	pending []image.PendingSignal
	creds   *image.Creds
}

// readTask reads a stopped task's state, on the tracer's thread. The
// registers come first, read as the task stopped; then what only the
// task itself can tell, through guarded calls. space is the task's
// address space, shared by the threads of its process.
func readTask(f *frozen, t *taskInfo, space *inject.Space) (*taskState, error) {
	if t.status.Seccomp != 0 {
		// Its filter could refuse, trap or kill on the calls capture
		// injects, and restart does not put filters back.
		return nil, fmt.Errorf("seccomp mode %d: %w", t.status.Seccomp, ErrUnsupported)
	}
	if t.status.ShadowStack {
		// rt_sigreturn checks a frame against the shadow stack, and the
		// guard's frame is not one the kernel made.
		return nil, fmt.Errorf("x86 user shadow stack: %w", ErrUnsupported)
	}
	s := &taskState{creds: t.status.ImageCreds()}
	err := f.tr.Do(func() (err error) {
		if s.regs, err = readRegs(t.tid); err != nil {
			return err
		}
		if s.rseq, err = readRSeq(t.tid); err != nil {
			return err
		}
		inj, err := inject.Guard(space, t.tid)
		if err != nil {
			return err
		}
		defer func() {
			if rerr := inj.Restore(); err == nil {
				err = rerr
			}
		}()
		leader := t.tid == t.tgid
		if leader {
			brk, err := inj.Syscall(unix.SYS_BRK, 0)
			if err != nil {
				return err
			}
			if s.mm, err = readMM(t.tid, brk); err != nil {
				return err
			}
			if s.acts, err = readSigHand(inj, t.status.SigCgt, t.status.SigIgn); err != nil {
				return err
			}
			if s.process, err = readProcess(t, inj); err != nil {
				return err
			}
			if s.rlimits, err = readRLimits(t); err != nil {
				return err
			}
			if s.timers, err = readITimers(inj); err != nil {
				return err
			}
		}
		if s.sigs, err = readSigState(inj); err != nil {
			return err
		}
		if s.thread, err = readThread(inj); err != nil {
			return err
		}
		if s.attr, err = readThreadAttr(t, inj); err != nil {
			return err
		}
		s.pending, err = readPending(t.tid, leader)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// write writes the task's records after its TASK record: the process's
// (with its pipes and descriptor table), then the thread's, then the
// process's pages, which go last because they are large.
func (s *taskState) write(iw *image.Writer, tid int, pageSize int, files []image.FD, objs shared) error {
	if s.mm != nil {
		if err := iw.WriteProcess(s.process); err != nil {
			return err
		}
		if err := iw.WriteRLimits(s.rlimits); err != nil {
			return err
		}
		if err := iw.WriteMM(s.mm); err != nil {
			return err
		}
		if err := iw.WriteSigHand(s.acts); err != nil {
			return err
		}
		if err := iw.WriteITimers(s.timers); err != nil {
			return err
		}
		for i := range objs.Pipes {
			if err := iw.WritePipe(&objs.Pipes[i]); err != nil {
				return err
			}
		}
		for i := range objs.Files {
			if err := iw.WriteFileData(&objs.Files[i]); err != nil {
				return err
			}
		}
		for i := range objs.Sockets {
			if err := iw.WriteSocket(&objs.Sockets[i]); err != nil {
				return err
			}
		}
		if err := iw.WriteFiles(files); err != nil {
			return err
		}
	}
	if err := iw.WriteRegs(s.regs); err != nil {
		return err
	}
	if err := iw.WriteSigState(s.sigs); err != nil {
		return err
	}
	if s.rseq != nil {
		if err := iw.WriteRSeq(s.rseq); err != nil {
			return err
		}
	}
	if err := iw.WriteThread(s.thread); err != nil {
		return err
	}
	if err := iw.WriteThreadAttr(s.attr); err != nil {
		return err
	}
	if err := iw.WriteSigPending(s.pending); err != nil {
		return err
	}
	if err := iw.WriteCreds(s.creds); err != nil {
		return err
	}
	if s.mm == nil {
		return nil
	}
	pw, err := newPageWriter(tid, pageSize)
	if err != nil {
		return err
	}
	defer pw.Close()
	return pw.write(iw, s.mm)
}
