package image

import (
	"bufio"
	"cmp"
	"io"
	"slices"
)

// Report is what `ckptfs inspect` shows of one input: the sections ReadAny
// reads and, for a whole image with per-task records, what each task's
// records hold and the objects its descriptors share.
type Report struct {
	Image    *Image
	Sections Sections
	// Details[i] is the detail of Image.Tasks[i]. It is nil unless the
	// input is a whole image in which some task has per-task records (so
	// a bare pids or tree section, or an image of TASK records alone, is
	// reported as before).
	Details []TaskDetail
	// The pipes, socket ends and unlinked files of the tree, by inode,
	// with every descriptor that refers to them.
	Pipes   []PipeObject
	Sockets []SocketObject
	Files   []FileObject
}

// PipeObject is a pipe or named pipe of the tree ("pipes" of the JSON
// report) and the descriptors on it.
type PipeObject struct {
	PipeDetail
	HeldBy []Holder `json:"held_by"`
}

// SocketObject is one end of a unix socket pair of the tree ("sockets")
// and the descriptors on it.
type SocketObject struct {
	SocketDetail
	HeldBy []Holder `json:"held_by"`
}

// FileObject is an unlinked file or memfd of the tree ("files") and the
// descriptors on it.
type FileObject struct {
	FileDetail
	HeldBy []Holder `json:"held_by"`
}

// ReadReport reads what ReadAny reads and, from a whole image, every
// task's records too. It streams: page contents are counted as they pass
// and never held, so its memory grows with the image's records, not its
// pages. The image is validated as ReadAny validates it (TAIL included)
// and every record it decodes as restart would decode it.
func ReadReport(rd io.Reader) (*Report, error) {
	br := bufio.NewReaderSize(rd, 64<<10)
	if b, err := br.Peek(4); err != nil || le.Uint32(b) != RecHeader {
		// A standalone section, or something ReadAny explains.
		img, s, err := ReadAny(br)
		if err != nil {
			return nil, err
		}
		return &Report{Image: img, Sections: s}, nil
	}
	r := NewReader(br) // reuses br
	rep, err := startReport(r)
	if err != nil {
		return nil, err
	}
	for {
		ts, err := r.NextTask()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := rep.addTask(r, ts, false).drain(); err != nil {
			return nil, err
		}
	}
	rep.finish()
	return rep, nil
}

// startReport reads an image's HEADER, PIDS and TREE.
func startReport(r *Reader) (*Report, error) {
	img, err := r.Prologue()
	if err != nil {
		return nil, err
	}
	return &Report{Image: img, Sections: SecImage}, nil
}

// addTask adds the task NextTask just returned, and returns the cursor
// that reads its records. Details grow as TASK records arrive, so a TREE
// that claims many tasks costs nothing until they come.
func (rep *Report) addTask(r *Reader, ts *TaskState, contents bool) *taskCursor {
	rep.Image.Tasks = append(rep.Image.Tasks, *ts)
	rep.Details = append(rep.Details, TaskDetail{})
	return newTaskCursor(r, &rep.Details[len(rep.Details)-1], int(rep.Image.Header.PageSize), contents)
}

// finish links descriptors to the objects they share, once every task is
// read, or drops the details of an image that has none.
func (rep *Report) finish() {
	records := 0
	for i := range rep.Details {
		records += rep.Details[i].records
	}
	if records == 0 {
		rep.Details = nil
		return
	}
	rep.link()
}

// taskCursor reads the per-task records of the current task of r into d,
// and with contents yields its pages one by one (for a diff, which
// compares them as two images stream by). Without contents, PAGES records
// are counted and skipped unread.
type taskCursor struct {
	r        *Reader
	d        *TaskDetail
	pageSize int
	contents bool

	page []byte // the current page, with contents
	addr uint64 // its address
	left int64  // pages of the current PAGES record still to read
	end  uint64 // end of the previous page, to check the order
	seen bool   // a page was yielded
	done bool
}

func newTaskCursor(r *Reader, d *TaskDetail, pageSize int, contents bool) *taskCursor {
	c := &taskCursor{r: r, d: d, pageSize: pageSize, contents: contents}
	if contents {
		c.page = make([]byte, pageSize)
	}
	return c
}

// next moves to the next page of the task, decoding every other record on
// the way; it returns false once the task's records are read through.
// Without contents it never stops at a page.
func (c *taskCursor) next() (bool, error) {
	if c.done {
		return false, nil
	}
	ps := uint64(c.pageSize)
	if c.left > 0 {
		c.addr += ps
	} else {
		for {
			rec, err := c.r.NextRecord()
			if err == io.EOF {
				c.done = true
				return false, nil
			}
			if err != nil {
				return false, err
			}
			if rec.Type != RecPages {
				if err := c.d.read(c.r, rec); err != nil {
					return false, err
				}
				continue
			}
			c.d.records++
			addr, err := c.r.ReadPagesAddr(rec, c.pageSize)
			if err != nil {
				return false, err
			}
			n := (rec.Size - 8) / int64(c.pageSize)
			c.d.countPages(addr, n, ps)
			if !c.contents || n == 0 {
				continue // NextRecord skips the pages, through the checksum
			}
			if c.seen && addr < c.end {
				// A merge of two images' pages needs them in order;
				// ckptfs writes them so (mapping by mapping).
				return false, c.r.fail(formatErr("PAGES", rec.Offset, ErrOrder,
					"pages at %#x follow pages up to %#x: not in address order", addr, c.end))
			}
			c.addr, c.left = addr, n
			break
		}
	}
	if _, err := io.ReadFull(c.r, c.page); err != nil {
		return false, c.r.ioErr(err, "PAGES", "the page contents")
	}
	c.left--
	c.end, c.seen = c.addr+ps, true
	return true, nil
}

// drain reads the rest of the task's records.
func (c *taskCursor) drain() error {
	for {
		more, err := c.next()
		if err != nil || !more {
			return err
		}
	}
}

// pidNumbersOf returns the numbers of pid tag t from the root's namespace
// down, nil if the tag is not a pid of the image.
func (img *Image) pidNumbersOf(t Tag) []int32 {
	if t == 0 || int(t) > len(img.Pids.Pids) {
		return nil
	}
	levels := img.Pids.Pids[t-1].Levels
	nums := make([]int32, len(levels))
	for i, l := range levels {
		nums[i] = l.Nr
	}
	return nums
}

// link gathers the pipes, sockets and unlinked files the tasks' records
// carry, lists the descriptors on each, and points every descriptor at its
// object and at the other descriptors sharing it.
func (rep *Report) link() {
	pipes := make(map[uint64]int)
	sockets := make(map[uint64]int)
	files := make(map[[2]uint64]int)
	for i := range rep.Details {
		d := &rep.Details[i]
		for _, p := range d.pipes {
			if _, dup := pipes[p.Ino]; !dup {
				pipes[p.Ino] = len(rep.Pipes)
				rep.Pipes = append(rep.Pipes, PipeObject{PipeDetail: p})
			}
		}
		for _, s := range d.sockets {
			if _, dup := sockets[s.Ino]; !dup {
				sockets[s.Ino] = len(rep.Sockets)
				rep.Sockets = append(rep.Sockets, SocketObject{SocketDetail: s})
			}
		}
		for _, f := range d.files {
			key := [2]uint64{f.devNr, f.Ino}
			if _, dup := files[key]; !dup {
				files[key] = len(rep.Files)
				rep.Files = append(rep.Files, FileObject{FileDetail: f})
			}
		}
	}
	// heldBy returns the holder list of the object fd refers to.
	heldBy := func(fd *FDDetail) *[]Holder {
		switch fd.ref.kind {
		case objPipe:
			if j, ok := pipes[fd.ref.ino]; ok {
				return &rep.Pipes[j].HeldBy
			}
		case objSocket:
			if j, ok := sockets[fd.ref.ino]; ok {
				return &rep.Sockets[j].HeldBy
			}
		case objFile:
			if j, ok := files[[2]uint64{fd.ref.dev, fd.ref.ino}]; ok {
				return &rep.Files[j].HeldBy
			}
		}
		return nil
	}
	for i := range rep.Details {
		pid := rep.Image.pidNumbersOf(rep.Image.Tree.Tasks[i].Pid)
		for k := range rep.Details[i].FDs {
			fd := &rep.Details[i].FDs[k]
			if list := heldBy(fd); list != nil {
				*list = append(*list, Holder{Pid: pid, FD: fd.FD, Access: accessText(fd.flags)})
			}
		}
	}
	for i := range rep.Details {
		pid := rep.Image.pidNumbersOf(rep.Image.Tree.Tasks[i].Pid)
		for k := range rep.Details[i].FDs {
			fd := &rep.Details[i].FDs[k]
			switch fd.ref.kind {
			case objPipe:
				if j, ok := pipes[fd.ref.ino]; ok {
					p := rep.Pipes[j].PipeDetail
					fd.Pipe = &p
				}
			case objSocket:
				if j, ok := sockets[fd.ref.ino]; ok {
					s := rep.Sockets[j].SocketDetail
					fd.Socket = &s
					if pj, ok := sockets[s.Peer]; ok {
						fd.PeerHeldBy = rep.Sockets[pj].HeldBy
					}
				}
			case objFile:
				if j, ok := files[[2]uint64{fd.ref.dev, fd.ref.ino}]; ok {
					f := rep.Files[j].FileDetail
					fd.File = &f
					if f.Memfd {
						fd.Kind = "memfd"
					}
				}
			}
			if list := heldBy(fd); list != nil {
				for _, h := range *list {
					if h.FD != fd.FD || !slices.Equal(h.Pid, pid) {
						fd.SharedWith = append(fd.SharedWith, h)
					}
				}
			}
		}
	}
	slices.SortFunc(rep.Pipes, func(a, b PipeObject) int { return cmp.Compare(a.Ino, b.Ino) })
	slices.SortFunc(rep.Sockets, func(a, b SocketObject) int { return cmp.Compare(a.Ino, b.Ino) })
	slices.SortFunc(rep.Files, func(a, b FileObject) int {
		return cmp.Or(cmp.Compare(a.devNr, b.devNr), cmp.Compare(a.Ino, b.Ino))
	})
}
