package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// readMM reads the address space of the frozen process pid. brk is read by
// making the process call brk(0): /proc shows only where the heap starts.
func readMM(pid int, brk uint64) (*image.MM, error) {
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return nil, err
	}
	f := &st.MM
	auxv, err := procfs.ReadAuxv(pid)
	if err != nil {
		return nil, err
	}
	exe, err := procfs.Exe(pid)
	if err != nil {
		return nil, err
	}
	maps, err := procfs.ReadMaps(pid)
	if err != nil {
		return nil, err
	}
	mm := &image.MM{
		StartCode: f.StartCode, EndCode: f.EndCode, StartData: f.StartData, EndData: f.EndData,
		StartBrk: f.StartBrk, Brk: brk, StartStack: f.StartStack,
		ArgStart: f.ArgStart, ArgEnd: f.ArgEnd, EnvStart: f.EnvStart, EnvEnd: f.EnvEnd,
		Auxv: auxv, Exe: exe,
	}
	for _, m := range maps {
		v, err := vmaOf(&m)
		if err != nil {
			return nil, err
		}
		mm.VMAs = append(mm.VMAs, v)
	}
	return mm, nil
}

// vmaOf describes one line of /proc/<pid>/maps, refusing what restart could
// not map back as it was.
func vmaOf(m *procfs.Mapping) (image.VMA, error) {
	v := image.VMA{Start: m.Start, End: m.End, Pgoff: m.Offset, Path: m.Path,
		Dev: unix.Mkdev(m.Major, m.Minor), Ino: m.Inode}
	if m.Perms[0] == 'r' {
		v.Prot |= unix.PROT_READ
	}
	if m.Perms[1] == 'w' {
		v.Prot |= unix.PROT_WRITE
	}
	if m.Perms[2] == 'x' {
		v.Prot |= unix.PROT_EXEC
	}
	if m.Shared() {
		v.Flags |= image.VMAShared
	}
	switch m.Path {
	case "[heap]":
		v.Special = image.SpecialHeap
	case "[stack]":
		v.Special, v.Flags = image.SpecialStack, v.Flags|image.VMAGrowsDown
	case "[vdso]":
		v.Special = image.SpecialVDSO
	case "[vvar]":
		v.Special = image.SpecialVVar
	case "[vvar_vclock]":
		v.Special = image.SpecialVVarVclock
	case "[vsyscall]":
		v.Special = image.SpecialVSyscall
	}
	switch {
	case v.Special != image.SpecialNone:
		v.Flags |= image.VMAAnon
	case m.Inode == 0:
		// Anonymous, possibly named ("[anon:...]"), private.
		v.Flags |= image.VMAAnon
	case m.Shared() && strings.HasPrefix(m.Path, "/dev/zero"):
		// Shared anonymous memory lives in an internal shmem file.
		v.Flags |= image.VMAAnon
	case strings.HasSuffix(m.Path, " (deleted)"):
		return v, fmt.Errorf("mapping %#x-%#x of deleted file %q: %w", m.Start, m.End, m.Path, ErrUnsupported)
	case m.Shared() && m.Perms[1] == 'w' && strings.HasPrefix(m.Path, "/memfd:"):
		return v, fmt.Errorf("shared memfd mapping %#x-%#x (%s): %w", m.Start, m.End, m.Path, ErrUnsupported)
	}
	return v, nil
}

// dumpable reports which pages of a mapping the image must carry: those
// only the process holds. Pages of a shared file mapping live in the file;
// clean pages of a private file mapping are the file's too.
func dumpable(v *image.VMA, entry uint64) bool {
	if v.Flags&image.VMAAnon != 0 {
		return entry&(procfs.PagePresent|procfs.PageSwapped) != 0
	}
	// Private file mapping: a written page became anonymous.
	return entry&(procfs.PagePresent|procfs.PageSwapped) != 0 && entry&procfs.PageFile == 0
}

// holdsPages reports whether any page of the mapping can belong in the
// image: the kernel's special mappings are made anew by restart, and a
// shared file mapping's pages are the file's.
func holdsPages(v *image.VMA) bool {
	switch v.Special {
	case image.SpecialVDSO, image.SpecialVVar, image.SpecialVVarVclock, image.SpecialVSyscall:
		return false
	}
	return v.Flags&image.VMAAnon != 0 || v.Flags&image.VMAShared == 0
}

// pageWriter copies page runs of one process from /proc/<pid>/mem into the
// image, a PAGES record per run of at most image.MaxPagesRecord bytes.
type pageWriter struct {
	pid      int
	pageSize int
	mem      *os.File
	pagemap  *procfs.Pagemap
	entries  []uint64
	regions  []procfs.Region // PAGEMAP_SCAN's answers
	noScan   bool            // the kernel has no PAGEMAP_SCAN
}

func newPageWriter(pid, pageSize int) (*pageWriter, error) {
	mem, err := procfs.OpenMem(pid, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	pm, err := procfs.OpenPagemap(pid)
	if err != nil {
		mem.Close()
		return nil, err
	}
	return &pageWriter{pid: pid, pageSize: pageSize, mem: mem, pagemap: pm,
		entries: make([]uint64, image.MaxPagesRecord/pageSize), regions: make([]procfs.Region, 0, 512)}, nil
}

func (p *pageWriter) Close() {
	p.mem.Close()
	p.pagemap.Close()
}

// pageBuffers recycles the buffers page runs are read into, across the
// tasks of a tree and across checkpoints.
var pageBuffers = sync.Pool{New: func() any { return make([]byte, image.MaxPagesRecord) }}

// pageRun is one run of pages read from the task, on its way to the image.
type pageRun struct {
	addr uint64
	data []byte
}

// write writes the dumpable pages of every mapping of mm. Reading the
// task's memory and writing the image overlap: one goroutine reads runs
// into a few buffers while this one writes the previous ones out. If the
// image is being laid out (the Writer's sink is a pageDeferrer), the runs
// are only recorded, to be read when the image is (see lay).
func (p *pageWriter) write(w *image.Writer, mm *image.MM) error {
	if d, ok := w.Deferrer().(pageDeferrer); ok {
		return p.lay(w, d, mm)
	}
	const buffers = 3
	free := make(chan []byte, buffers)
	for range buffers {
		free <- pageBuffers.Get().([]byte)
	}
	defer func() {
		for range buffers {
			pageBuffers.Put(<-free)
		}
	}()
	runs := make(chan pageRun, buffers)
	done := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(runs)
		readErr <- p.read(mm, free, runs, done)
	}()
	var err error
	for r := range runs {
		if err == nil {
			err = w.WritePages(r.addr, r.data)
			if err != nil {
				close(done) // stop the reader; drain what it sent
			}
		}
		free <- r.data[:cap(r.data)]
	}
	if rerr := <-readErr; err == nil {
		err = rerr
	}
	return err
}

// errStopped ends a walk over the runs early, without an error.
var errStopped = errors.New("stopped")

// read reads each run of dumpable pages from /proc/<pid>/mem into a free
// buffer and sends it on.
func (p *pageWriter) read(mm *image.MM, free chan []byte, runs chan<- pageRun, done <-chan struct{}) error {
	err := p.runs(mm, func(_ *image.VMA, start uint64, n int) error {
		var buf []byte
		select {
		case buf = <-free:
		case <-done:
			return errStopped
		}
		run, err := p.readRun(buf, start, n)
		if err != nil {
			free <- buf
			return err
		}
		runs <- pageRun{start, run}
		return nil
	})
	if err == errStopped {
		return nil
	}
	return err
}

// readRun reads n bytes of the task's memory at start into buf.
func (p *pageWriter) readRun(buf []byte, start uint64, n int) ([]byte, error) {
	run := buf[:n]
	if _, err := p.mem.ReadAt(run, int64(start)); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read memory at %#x: %w", start, err)
	}
	return run, nil
}

// runs finds the runs of dumpable pages of every mapping through pagemap and
// calls fn for each, in address order, split at image.MaxPagesRecord
// boundaries counted from the mapping's start.
func (p *pageWriter) runs(mm *image.MM, fn func(v *image.VMA, start uint64, n int) error) error {
	for i := range mm.VMAs {
		v := &mm.VMAs[i]
		if !holdsPages(v) {
			continue
		}
		if !p.noScan {
			err := p.scanRuns(v, fn)
			if !errors.Is(err, unix.ENOTTY) {
				if err != nil {
					return err
				}
				continue
			}
			p.noScan = true // a kernel before 6.7: entry by entry
		}
		if err := p.entryRuns(v, fn); err != nil {
			return err
		}
	}
	return nil
}

// scanRuns finds the runs of dumpable pages of one mapping with
// PAGEMAP_SCAN: what dumpable says of each page's entry, asked of the
// kernel for the whole mapping at once.
func (p *pageWriter) scanRuns(v *image.VMA, fn func(v *image.VMA, start uint64, n int) error) error {
	var inverted, mask uint64
	if v.Flags&image.VMAAnon == 0 {
		// A private file mapping: only pages written (no longer the
		// file's).
		inverted, mask = procfs.ScanFile, procfs.ScanFile
	}
	chunk := uint64(len(p.entries) * p.pageSize)
	for at := v.Start; at < v.End; {
		regions, reached, err := p.pagemap.Scan(at, v.End, inverted, mask, procfs.ScanPresent|procfs.ScanSwapped, p.regions)
		if err != nil {
			return err
		}
		for _, r := range regions {
			// Cut where the entry-by-entry walk cuts: at every chunk
			// from the mapping's start, so that both give the same runs.
			for s := r.Start; s < r.End; {
				e := min(r.End, v.Start+((s-v.Start)/chunk+1)*chunk)
				if err := fn(v, s, int(e-s)); err != nil {
					return err
				}
				s = e
			}
		}
		if reached <= at {
			return fmt.Errorf("pagemap scan at %#x went nowhere", at)
		}
		at = reached
	}
	return nil
}

// entryRuns finds the runs of dumpable pages of one mapping by reading
// each page's pagemap entry.
func (p *pageWriter) entryRuns(v *image.VMA, fn func(v *image.VMA, start uint64, n int) error) error {
	ps := uint64(p.pageSize)
	for addr := v.Start; addr < v.End; {
		n := min((v.End-addr)/ps, uint64(len(p.entries)))
		entries := p.entries[:n]
		if err := p.pagemap.Read(addr, p.pageSize, entries); err != nil {
			return fmt.Errorf("pagemap at %#x: %w", addr, err)
		}
		// Each run of consecutive dumpable pages.
		for j := 0; j < len(entries); {
			if !dumpable(v, entries[j]) {
				j++
				continue
			}
			k := j
			for k < len(entries) && dumpable(v, entries[k]) {
				k++
			}
			if err := fn(v, addr+uint64(j)*ps, (k-j)*p.pageSize); err != nil {
				return err
			}
			j = k
		}
		addr += n * ps
	}
	return nil
}

// pageDeferrer is the sink of an image being laid out (layout.go): it is
// told whose memory the pages deferred next belong to, and asked for room
// for pages read while the tree is frozen (copy_limit.go).
type pageDeferrer interface {
	image.Deferrer
	process(pid int)
	readFrozen(n int64) bool
}

// lay records where each run of pages goes in the image, to be read when
// the image is read (from a copy of the process's memory, or from the
// process held frozen: copy.go). Pages of shared mappings are the
// exception, read now, while the tree is frozen: a copy shares them with
// the process, a process outside the tree may write them whenever, and
// every reader of an image must get the same bytes. They count against
// the snapshot's limit on duplicated memory (copy_limit.go).
func (p *pageWriter) lay(w *image.Writer, d pageDeferrer, mm *image.MM) error {
	d.process(p.pid)
	var buf []byte
	defer func() {
		if buf != nil {
			pageBuffers.Put(buf)
		}
	}()
	return p.runs(mm, func(v *image.VMA, start uint64, n int) error {
		if v.Flags&image.VMAShared == 0 {
			return w.WritePagesLater(start, n)
		}
		if !d.readFrozen(int64(n)) {
			return fmt.Errorf("shared mapping %#x-%#x (%s): its pages are read while the tree is frozen, which would go over the snapshot's limit on duplicated memory: %w",
				v.Start, v.End, vmaName(v), ErrCopyLimit)
		}
		if buf == nil {
			buf = pageBuffers.Get().([]byte)
		}
		run, err := p.readRun(buf, start, n)
		if err != nil {
			return err
		}
		return w.WritePages(start, run)
	})
}

// vmaName names a mapping for an error: its path, or what it is.
func vmaName(v *image.VMA) string {
	if v.Path != "" {
		return v.Path
	}
	return "anonymous"
}
