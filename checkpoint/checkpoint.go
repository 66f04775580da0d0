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
	Mode image.Mode
	// Tasks counts every task of the tree (each thread of each process,
	// zombies included); Processes the thread groups among them, and
	// Threads the tasks that are not the leader of their group, so that
	// Tasks = Processes + Threads.
	Tasks     int
	Processes int
	Threads   int
	Pids      Section // the PIDS section
	Tree      Section // the TREE section
	Size      int64   // the whole image
	// PageBytes is the page contents the image carries (the payload of
	// its PAGES records, less their addresses), Pages that in pages of
	// the header's page size.
	Pages     int64
	PageBytes int64
	// Frozen is how long the tree was stopped: for Write, until its image
	// was written; for Lay, until it was laid out (it stays stopped
	// after that, see Layout).
	Frozen time.Duration
	// Capture is how long the checkpoint took from its start (the freeze
	// begins) until the image was written (Write) or laid out (Lay).
	Capture time.Duration
	// Copies counts the processes whose pages are read from a
	// copy-on-write copy of their memory (Lay: copy.go), Held those kept
	// frozen until their image is read instead, and CopiedBytes the page
	// bytes read while the tree was frozen, from processes too small for
	// a copy and from mappings a copy does not share.
	Copies      int
	Held        int
	CopiedBytes int64
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
	start := time.Now()
	f, err := freeze(ctx, root, &opt)
	if err != nil {
		return nil, err
	}
	res, err := write(ctx, &countingWriter{w: w}, f, &opt)
	if res != nil {
		res.Frozen = f.frozenFor()
		res.Capture = time.Since(start)
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
	ids := newFileIDs()
	tables, pipes, err := fileTables(infos, f.seized, opt.ReplaceExternal, ids)
	if err != nil {
		return nil, err
	}
	res := &Result{Mode: mode, Tasks: len(infos), Members: make([]Member, len(infos))}
	for i, t := range infos {
		res.Members[i] = Member{TaskID{t.tgid, t.tid}, ptraceCredsOf(t.tgid, t.status)}
		if t.tid == t.tgid {
			res.Processes++
		} else {
			res.Threads++
		}
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
			if st.mm != nil {
				ids.mappings(t.tgid, st.mm)
			}
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
	if c, ok := w.(pageCounting); ok {
		res.PageBytes = c.pageBytes()
		res.Pages = res.PageBytes / int64(hdr.PageSize)
	}
	return res, nil
}

// pageCounting is a sink that counts the page contents of the image
// written to it (see pageCounter): Write's countingWriter, or Lay's
// layoutBuilder.
type pageCounting interface {
	pageBytes() int64
}

// countingWriter is Write's sink: w, with the page contents of what goes
// through it counted.
type countingWriter struct {
	w     io.Writer
	pages pageCounter
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.pages.see(p[:n])
	return n, err
}

func (c *countingWriter) pageBytes() int64 { return c.pages.bytes }

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
