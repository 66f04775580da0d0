package restart

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/fault"
)

// taskRecords are the small per-task records of one task, kept until its
// memory is in place: they go back after it, registers last.
type taskRecords struct {
	regs    *image.Regs
	acts    []image.SigAction
	sigs    *image.SigState
	rseq    *image.RSeq
	files   []image.FD
	process *image.Process
	rlimits []image.RLimit
	creds   *image.Creds
	thread  *image.Thread
	attr    *image.ThreadAttr
	timers  *[3]image.ITimer
	pending []image.PendingSignal
}

// task restores one task from its records: the address space while its
// pages stream in, then everything else (apply).
func (rs *restorer) task(p *proc, ts *image.TaskState) error {
	var as *addrSpace
	var t taskRecords
	defer func() {
		rs.pages.wait() // no write may outlive the memory file it uses
		if as != nil {
			as.close()
		}
	}()
	for {
		rec, err := rs.ir.NextRecord()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch rec.Type {
		case image.RecMM:
			mm, err := rs.ir.ReadMM(rec)
			if err != nil {
				return err
			}
			if as, err = newAddrSpace(p, mm, rs.gate, &rs.shmem); err != nil {
				return err
			}
			if err := as.prepare(); err != nil {
				return err
			}
		case image.RecPages:
			if as == nil {
				return errors.New("PAGES before MM")
			}
			if err := rs.pagesInto(as, rec); err != nil {
				return err
			}
		case image.RecPipe:
			pipe, err := rs.ir.ReadPipe(rec)
			if err != nil {
				return err
			}
			if err := rs.pipes.add(pipe); err != nil {
				return err
			}
		case image.RecFileData:
			d, err := rs.ir.ReadFileData(rec)
			if err != nil {
				return err
			}
			if err := rs.files.add(d); err != nil {
				return err
			}
		case image.RecSocket:
			sock, err := rs.ir.ReadSocket(rec)
			if err != nil {
				return err
			}
			if err := rs.sockets.add(sock); err != nil {
				return err
			}
		default:
			if err := rs.readRecord(&t, rec); err != nil {
				return err
			}
		}
	}
	if err := rs.pages.wait(); err != nil {
		return err
	}
	if as != nil {
		if err := as.finish(); err != nil {
			return err
		}
	}
	return rs.apply(p, ts, &t, as == nil)
}

// pagesInto queues the page run of a PAGES record for writing into as.
func (rs *restorer) pagesInto(as *addrSpace, rec image.Record) error {
	addr, err := rs.ir.ReadPagesAddr(rec, int(rs.hdr.PageSize))
	if err != nil {
		return err
	}
	buf := rs.pages.buffer(int(rec.Size - 8))
	if _, err := io.ReadFull(rs.ir, buf); err != nil {
		rs.pages.giveBack(buf)
		return err
	}
	rs.pages.put(as, addr, buf)
	fault.Point("restart-memory")
	return nil
}

// readRecord keeps a small per-task record for apply. Unknown record types
// were skipped by the reader's rules already.
func (rs *restorer) readRecord(t *taskRecords, rec image.Record) (err error) {
	r := rs.ir
	switch rec.Type {
	case image.RecRegs:
		t.regs, err = r.ReadRegs(rec)
	case image.RecRSeq:
		t.rseq, err = r.ReadRSeq(rec)
	case image.RecSigPending:
		t.pending, err = r.ReadSigPending(rec)
	case image.RecITimers:
		t.timers, err = r.ReadITimers(rec)
	case image.RecThread:
		t.thread, err = r.ReadThread(rec)
	case image.RecThreadAttr:
		t.attr, err = r.ReadThreadAttr(rec)
	case image.RecRLimits:
		t.rlimits, err = r.ReadRLimits(rec)
	case image.RecProcess:
		t.process, err = r.ReadProcess(rec)
	case image.RecFiles:
		t.files, err = r.ReadFiles(rec)
	case image.RecSigHand:
		t.acts, err = r.ReadSigHand(rec)
	case image.RecSigState:
		t.sigs, err = r.ReadSigState(rec)
	case image.RecCreds:
		if t.creds, err = r.ReadCreds(rec); err == nil && rs.opt.AllowCreds != nil {
			err = rs.opt.AllowCreds(t.creds)
		}
	}
	return err
}

// apply puts a task's state back once its memory is in place. Arguments of
// the injected calls go below the stack pointer the task will have; its
// credentials come last but for the registers, since every step before
// needs the restorer's privileges. refresh: the task did not restore an
// address space itself (a thread), so its vDSO may have moved under it.
func (rs *restorer) apply(p *proc, ts *image.TaskState, t *taskRecords, refresh bool) error {
	if t.regs == nil {
		return errors.New("no registers in the image")
	}
	rsp := t.regs.GP[regRSP]
	if err := p.setComm(ts.Comm, rsp, refresh); err != nil {
		return err
	}
	if err := p.setSigHand(t.acts, rsp); err != nil {
		return err
	}
	// A descriptor table or fs struct shared with a thread or another
	// process is put back once (see putsBack).
	puts := rs.putsBack(ts.Pid)
	if puts&image.TaskSharesFiles != 0 {
		if err := p.setFiles(t.files, rsp, rs.gate, &rs.pipes, &rs.sockets, &rs.files, rs.terminal); err != nil {
			return err
		}
		for _, f := range t.files {
			if f.Kind == image.FileReplaced && f.Foreground() && rs.foreground == 0 {
				rs.foreground = p.tid
			}
		}
	}
	if t.process != nil {
		// The working directory and root through the gate, like files.
		pr := *t.process
		withFS := puts&image.TaskSharesFS != 0
		var err error
		if withFS {
			if pr.Cwd, err = rs.gate.open(t.process.Cwd, unix.X_OK, nil); err != nil {
				return fmt.Errorf("working directory: %w", err)
			}
		}
		if withFS && pr.Root != "/" {
			if pr.Root, err = rs.gate.open(t.process.Root, unix.X_OK, nil); err != nil {
				return fmt.Errorf("root directory: %w", err)
			}
		}
		if err := p.setProcess(&pr, rsp, withFS); err != nil {
			return err
		}
	}
	if t.sigs != nil {
		if err := p.setSigState(t.sigs, rsp); err != nil {
			return err
		}
	}
	if t.rseq != nil {
		// Registered anew at the same area: the kernel updates it as it
		// did before the cut.
		if _, err := p.syscall(unix.SYS_RSEQ, t.rseq.Pointer, uint64(t.rseq.Size), uint64(t.rseq.Flags),
			uint64(t.rseq.Signature)); err != nil {
			return fmt.Errorf("rseq registration: %w", err)
		}
	}
	if t.thread != nil {
		if err := p.setThread(t.thread); err != nil {
			return err
		}
	}
	if t.timers != nil {
		if err := p.setITimers(t.timers, rsp); err != nil {
			return err
		}
	}
	// A thread's own signals now; those queued to the whole process once
	// every thread has its mask back (see deferredSignals), or the first
	// thread still unmasked would take them.
	var shared []image.PendingSignal
	for _, ps := range t.pending {
		if ps.Shared {
			shared = append(shared, ps)
		} else if err := p.queueSignals([]image.PendingSignal{ps}, rsp); err != nil {
			return err
		}
	}
	if len(shared) > 0 {
		rs.deferred = append(rs.deferred, deferredSignals{p, rsp, t.regs, shared})
	}
	// Scheduling and limits late, with the restorer's privileges still:
	// a real-time policy or a raised limit may need them, and a lowered
	// limit (descriptors, pending signals) must not hinder the steps
	// before.
	if t.attr != nil {
		if err := p.setSched(t.attr, rsp); err != nil {
			return err
		}
	}
	if t.rlimits != nil {
		if err := p.setRLimits(t.rlimits, rsp); err != nil {
			return err
		}
	}
	if t.creds != nil && !sameCreds(t.creds, rs.seedCreds) {
		if err := p.setCreds(t.creds, rsp); err != nil {
			return err
		}
	}
	if t.attr != nil {
		if err := p.setPDeathSig(t.attr.PDeathSig); err != nil {
			return err
		}
	}
	return setRegs(p.tid, t.regs)
}
