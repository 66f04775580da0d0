package checkpoint

import (
	"context"
	"errors"
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
	Creds PtraceCreds
}

// TaskID names a task (thread) in the checkpointer's pid namespace.
type TaskID struct {
	Tgid, Tid int
}

// Write checkpoints the subtree rooted at process root and writes its image
// to w. The tree stays frozen while its state is written, then runs on. A
// ctx done before the end fails the checkpoint, and the tree runs on.
func Write(ctx context.Context, w io.Writer, root int, opt Options) (*Result, error) {
	f, err := freeze(ctx, root, &opt)
	if err != nil {
		return nil, err
	}
	res, err := write(ctx, w, f, &opt)
	if res != nil {
		res.Frozen = f.frozenFor()
	}
	f.thaw()
	if err != nil {
		return nil, err
	}
	return res, nil
}

// write collects the frozen tree and writes its image to w: the one capture
// of both Write and Lay. If w is a layoutBuilder, the contents of pages are
// only located (memory.go), and the image is laid out rather than written.
func write(ctx context.Context, w io.Writer, f *frozen, opt *Options) (*Result, error) {
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
	tables, pipes, err := fileTables(infos, f.seized, opt.ReplaceExternal)
	if err != nil {
		return nil, err
	}
	res := &Result{Mode: mode, Tasks: len(infos), Members: make([]Member, len(infos))}
	for i, t := range infos {
		res.Members[i] = Member{TaskID{t.tgid, t.tid}, ptraceCredsOf(t.tgid, t.status)}
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
	spaces := make(map[int]*inject.Space) // by tgid
	for i, t := range infos {
		if err := iw.WriteTask(&states[i]); err != nil {
			return nil, err
		}
		if !f.seized[t.tid] {
			continue // a zombie: nothing more to save
		}
		if err := ctx.Err(); err != nil {
			return nil, taskErr(t.tid, "capture", err)
		}
		space := spaces[t.tgid]
		if space == nil {
			err := f.tr.Do(func() (err error) {
				space, err = inject.NewSpace(t.tgid)
				return err
			})
			if err != nil {
				return nil, taskErr(t.tid, "capture", err)
			}
			spaces[t.tgid] = space
		}
		st, err := readTask(f, t, space)
		if err == nil {
			err = st.write(iw, t.tid, int(hdr.PageSize), tables[t.tgid], pipes[t.tgid])
		}
		if err != nil {
			return nil, taskErr(t.tid, "capture", err)
		}
	}
	if err := iw.Close(); err != nil {
		return nil, err
	}
	res.Size = iw.Offset()
	return res, nil
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
		if !f.seized[t.tid] {
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
