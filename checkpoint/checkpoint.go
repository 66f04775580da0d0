package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/inject"
	"github.com/ckptfs/ckptfs/internal/ptrace"
)

// Section is a byte range of an image.
type Section struct {
	Off, Len int64
}

// Result describes a written image.
type Result struct {
	Mode   image.Mode
	Tasks  int
	Pids   Section // the PIDS section
	Tree   Section // the TREE section
	Size   int64   // the whole image
	Frozen time.Duration
	// Members lists the tasks of the tree and the credentials they had, so
	// that access to the image can be checked again for a later reader.
	Members []Member
}

// Member is a task of a checkpointed tree and the credentials it had.
type Member struct {
	TaskID
	Creds Creds
}

// TaskID names a task (thread) in the checkpointer's pid namespace.
type TaskID struct {
	Tgid, Tid int
}

// Write checkpoints the subtree rooted at process root and writes its image
// to w. The tree stays frozen while its state is written, then runs on.
func Write(w io.Writer, root int, opt Options) (*Result, error) {
	f, err := freeze(root, &opt)
	if err != nil {
		return nil, err
	}
	res, err := write(w, f, &opt)
	if res != nil {
		res.Frozen = f.frozenFor()
	}
	f.thaw()
	if err != nil {
		return nil, err
	}
	return res, nil
}

// write collects the frozen tree and streams its image.
func write(w io.Writer, f *frozen, opt *Options) (*Result, error) {
	infos, rootLevel, err := collect(f)
	if err != nil {
		return nil, err
	}
	mode, pids, tree, err := buildForest(opt.Mode, infos, rootLevel)
	if err != nil {
		return nil, err
	}
	hdr, err := header(f, infos, mode)
	if err != nil {
		return nil, err
	}
	tables, pipes, err := fileTables(infos, f.held, opt.ReplaceExternal)
	if err != nil {
		return nil, err
	}
	res := &Result{Mode: mode, Tasks: len(infos), Members: make([]Member, len(infos))}
	for i, t := range infos {
		res.Members[i] = Member{TaskID{t.tgid, t.tid}, credsOf(t.tgid, t.status)}
	}

	iw := image.NewWriter(w)
	if err := iw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	start := iw.Offset()
	if err := iw.WritePids(pids); err != nil {
		return nil, err
	}
	res.Pids = Section{start, iw.Offset() - start}
	start = iw.Offset()
	if err := iw.WriteTree(tree); err != nil {
		return nil, err
	}
	res.Tree = Section{start, iw.Offset() - start}
	states := taskStates(infos, tree)
	for i, t := range infos {
		if err := iw.WriteTask(&states[i]); err != nil {
			return nil, err
		}
		if _, held := f.held[t.tid]; !held {
			continue // a zombie: nothing more to save
		}
		if err := writeTask(iw, f, t, hdr, tables[t.tgid], pipes[t.tgid]); err != nil {
			return nil, taskErr(t.tid, "capture", err)
		}
	}
	if err := iw.Close(); err != nil {
		return nil, err
	}
	res.Size = iw.Offset()
	return res, nil
}

// writeTask writes the state of one stopped task after its TASK record: a
// process's address space, every thread's registers, then the process's
// pages, which go last because they are large.
func writeTask(iw *image.Writer, f *frozen, t *taskInfo, hdr *image.Header, files []image.FD, pipes []image.Pipe) error {
	if t.status.Seccomp != 0 {
		// Its filter could refuse, trap or kill on the calls capture
		// injects, and restart does not put filters back.
		return fmt.Errorf("seccomp mode %d: %w", t.status.Seccomp, ErrUnsupported)
	}
	leader := t.tid == t.tgid
	var mm *image.MM
	var regs *image.Regs
	var acts []image.SigAction
	var sigs *image.SigState
	var rseq *image.RSeq
	var proc *image.Process
	var thread *image.Thread
	var timers *[3]image.ITimer
	var pending []image.PendingSignal
	err := f.tr.Do(func() (err error) {
		// Registers first, before any injected call borrows them.
		if regs, err = readRegs(t.tid, int(hdr.XSaveSize)); err != nil {
			return err
		}
		if rseq, err = readRSeq(t.tid); err != nil {
			return err
		}
		inj, err := inject.New(t.tid)
		if err != nil {
			return err
		}
		defer func() {
			if rerr := inj.Restore(); err == nil {
				err = rerr
			}
		}()
		if leader {
			brk, err := inj.Syscall(unix.SYS_BRK, 0)
			if err != nil {
				return err
			}
			if mm, err = readMM(t.tid, brk); err != nil {
				return err
			}
			if acts, err = readSigHand(inj, t.status.SigCgt, t.status.SigIgn); err != nil {
				return err
			}
			if proc, err = readProcess(t, inj); err != nil {
				return err
			}
			if timers, err = readITimers(inj); err != nil {
				return err
			}
		}
		if sigs, err = readSigState(inj); err != nil {
			return err
		}
		if thread, err = readThread(inj); err != nil {
			return err
		}
		pending, err = readPending(t.tid, leader, f.held[t.tid])
		return err
	})
	if err != nil {
		return err
	}
	if mm != nil {
		if err := iw.WriteProcess(proc); err != nil {
			return err
		}
		if err := iw.WriteMM(mm); err != nil {
			return err
		}
		if err := iw.WriteSigHand(acts); err != nil {
			return err
		}
		if err := iw.WriteITimers(timers); err != nil {
			return err
		}
		for i := range pipes {
			if err := iw.WritePipe(&pipes[i]); err != nil {
				return err
			}
		}
		if err := iw.WriteFiles(files); err != nil {
			return err
		}
	}
	if err := iw.WriteRegs(regs); err != nil {
		return err
	}
	if err := iw.WriteSigState(sigs); err != nil {
		return err
	}
	if rseq != nil {
		if err := iw.WriteRSeq(rseq); err != nil {
			return err
		}
	}
	if err := iw.WriteThread(thread); err != nil {
		return err
	}
	if err := iw.WriteSigPending(pending); err != nil {
		return err
	}
	if err := iw.WriteCreds(CredsOf(t.status)); err != nil {
		return err
	}
	if mm == nil {
		return nil
	}
	pw, err := newPageWriter(t.tid, int(hdr.PageSize))
	if err != nil {
		return err
	}
	defer pw.Close()
	return pw.write(iw, mm)
}

// buildForest records the tree in the requested mode; auto tries container
// mode when the root is the init of its namespace, and falls back to
// subtree mode when the tree refers to pids outside it.
func buildForest(m Mode, infos []*taskInfo, rootLevel int) (image.Mode, *image.Pids, *image.Tree, error) {
	try := func(mode image.Mode) (image.Mode, *image.Pids, *image.Tree, error) {
		pids, tree, err := newForest(mode, infos, rootLevel).build()
		return mode, pids, tree, err
	}
	switch m {
	case ModeContainer:
		return try(image.ModeContainer)
	case ModeSubtree:
		return try(image.ModeSubtree)
	}
	if infos[0].status.NSpid[rootLevel] == 1 {
		mode, pids, tree, err := try(image.ModeContainer)
		if !errors.Is(err, ErrOutside) {
			return mode, pids, tree, err
		}
	}
	return try(image.ModeSubtree)
}

// header states the compatibility facts. The FPU layout is read from a
// frozen task: what the kernel saves for it is what restart must load.
func header(f *frozen, infos []*taskInfo, mode image.Mode) (*image.Header, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, os.NewSyscallError("uname", err)
	}
	h := &image.Header{
		Version:  image.Version,
		Arch:     image.ArchX86_64,
		PageSize: uint32(os.Getpagesize()),
		Mode:     mode,
		Time:     time.Now().UnixNano(),
		Kernel:   unix.ByteSliceToString(uts.Release[:]),
	}
	for _, t := range infos {
		if _, held := f.held[t.tid]; !held {
			continue // a zombie has no registers
		}
		err := f.tr.Do(func() error {
			size, feat, err := ptrace.XState(t.tid)
			h.XSaveSize, h.XSaveFeatures = uint32(size), feat
			return err
		})
		if err != nil {
			return nil, taskErr(t.tid, "read xsave layout", err)
		}
		break
	}
	return h, nil
}
