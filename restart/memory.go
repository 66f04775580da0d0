package restart

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/inject"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// The address space is rebuilt in a task that is still a copy of the seed
// (docs/DESIGN.md §6): unmap everything of the seed but the vDSO, vvar and a
// scratch area placed clear of the image's mappings; move the vDSO and vvar
// where they were; map every mapping of the image at its address; write the
// pages; set the mm fields; drop the scratch area. Only the vDSO's syscall
// instruction, which moves with it, is needed to drive all of it.

// The scratch area: batch code, the PR_SET_MM_MAP argument, path strings,
// and the table of a batch of calls.
const (
	scratchCode  = 0
	scratchMM    = 4096
	scratchPaths = 8192
	scratchTable = 32 << 10
)

const (
	scratchSize = 64 << 10
	taskSize    = 0x7ffffffff000 // TASK_SIZE_MAX with 4-level paging
)

// isKernelSpecial reports mappings the kernel makes and restart moves.
func isKernelSpecial(s uint32) bool {
	return s == image.SpecialVDSO || s == image.SpecialVVar || s == image.SpecialVVarVclock
}

// span is an address range [start, end).
type span struct{ start, end uint64 }

func (a span) overlaps(b span) bool { return a.start < b.end && b.start < a.end }

// freeSpan finds size bytes that overlap none of used, searching down from
// the top of the address space where programs rarely map.
func freeSpan(size uint64, used []span) (uint64, error) {
	for addr := uint64(taskSize) - size - 1<<30; addr > 1<<32; addr -= 1 << 30 {
		cand := span{addr &^ 0xfff, (addr &^ 0xfff) + size}
		if !slices.ContainsFunc(used, cand.overlaps) {
			return cand.start, nil
		}
	}
	return 0, fmt.Errorf("no free %d bytes for a scratch area", size)
}

// addrSpace restores one process's memory.
type addrSpace struct {
	p       *proc
	mm      *image.MM
	scratch uint64
	mem     *os.File
	fds     map[fileKey]uint64 // files opened in the task while mapping
	gate    *gate              // finds the mapped files
	shmem   *shmemSet          // the shared anonymous memory of the restore
}

func newAddrSpace(p *proc, mm *image.MM, g *gate, shmem *shmemSet) (*addrSpace, error) {
	mem, err := procfs.OpenMem(p.tid, os.O_RDWR)
	if err != nil {
		return nil, err
	}
	return &addrSpace{p: p, mm: mm, mem: mem, gate: g, shmem: shmem}, nil
}

func (a *addrSpace) close() { a.mem.Close() }

// prepare clears the seed's memory and lays out the image's mappings.
func (a *addrSpace) prepare() error {
	cur, err := procfs.ReadMaps(a.p.tid)
	if err != nil {
		return err
	}
	var used []span
	for _, v := range a.mm.VMAs {
		used = append(used, span{v.Start, v.End})
	}
	var keep []span // the seed's vDSO and vvar
	for _, m := range cur {
		if m.Path == "[vdso]" || m.Path == "[vvar]" || m.Path == "[vvar_vclock]" {
			keep = append(keep, span{m.Start, m.End})
		}
	}
	if a.scratch, err = freeSpan(scratchSize, append(used, keep...)); err != nil {
		return err
	}
	// Executable too: it holds the code that runs batches of calls.
	if _, err := a.p.syscall(unix.SYS_MMAP, a.scratch, scratchSize, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0); err != nil {
		return fmt.Errorf("map scratch area: %w", err)
	}
	if _, err := a.mem.WriteAt(inject.BatchCode, int64(a.scratch+scratchCode)); err != nil {
		return fmt.Errorf("write batch code: %w", err)
	}
	keep = append(keep, span{a.scratch, a.scratch + scratchSize})
	slices.SortFunc(keep, func(x, y span) int { return cmpU64(x.start, y.start) })
	// Unmap the gaps between what is kept.
	prev := uint64(0x1000)
	for _, k := range append(keep, span{taskSize, taskSize}) {
		if k.start > prev {
			if _, err := a.p.syscall(unix.SYS_MUNMAP, prev, k.start-prev); err != nil {
				return fmt.Errorf("unmap seed memory %#x-%#x: %w", prev, k.start, err)
			}
		}
		prev = max(prev, k.end)
	}
	if err := a.moveSpecials(cur, used); err != nil {
		return err
	}
	return a.mapAll()
}

// mapAll maps every mapping of the image, in two batches of calls: first
// each backing file is opened (once, however many mappings it backs),
// then every mapping is made and the files are closed.
func (a *addrSpace) mapAll() error {
	a.fds = make(map[fileKey]uint64)
	var opens []inject.Call
	var keys []fileKey
	keyOf := make(map[int]fileKey) // by VMA index: looked up once
	paths := uint64(scratchPaths)
	for i := range a.mm.VMAs {
		v := &a.mm.VMAs[i]
		if !mapped(v) || v.Flags&image.VMAAnon != 0 && !isSharedAnon(v) {
			continue
		}
		key, err := a.fileKeyOf(v)
		if err != nil {
			return err
		}
		keyOf[i] = key
		if _, ok := a.fds[key]; ok {
			continue
		}
		a.fds[key] = 0
		if paths+uint64(len(key.via))+1 > scratchTable {
			return fmt.Errorf("the paths of the mapped files exceed %d bytes", scratchTable-scratchPaths)
		}
		if _, err := a.mem.WriteAt(append([]byte(key.via), 0), int64(a.scratch+paths)); err != nil {
			return err
		}
		atFDCWD := int64(unix.AT_FDCWD)
		opens = append(opens, inject.Call{Nr: unix.SYS_OPENAT,
			Args: [6]uint64{uint64(atFDCWD), a.scratch + paths, key.mode | unix.O_CLOEXEC}})
		keys = append(keys, key)
		paths += uint64(len(key.via)) + 1
	}
	fds, err := a.batch(opens)
	if err != nil {
		return fmt.Errorf("open mapped files: %w", err)
	}
	for i, k := range keys {
		a.fds[k] = fds[i]
	}
	var calls []inject.Call
	for i := range a.mm.VMAs {
		v := &a.mm.VMAs[i]
		if !mapped(v) {
			continue
		}
		fd := ^uint64(0)
		if v.Flags&image.VMAAnon == 0 || isSharedAnon(v) {
			fd = a.fds[keyOf[i]]
		}
		calls = append(calls, inject.Call{Nr: unix.SYS_MMAP,
			Args: [6]uint64{v.Start, v.End - v.Start, uint64(v.Prot), mapFlags(v), fd, v.Pgoff}})
	}
	for _, fd := range a.fds {
		calls = append(calls, inject.Call{Nr: unix.SYS_CLOSE, Args: [6]uint64{fd}})
	}
	if _, err := a.batch(calls); err != nil {
		return fmt.Errorf("map the image's mappings: %w", err)
	}
	return nil
}

// batch runs calls through the batch code in the scratch area, as many
// at a time as its table holds.
func (a *addrSpace) batch(calls []inject.Call) ([]uint64, error) {
	per := inject.BatchCapacity(scratchSize - scratchTable)
	var out []uint64
	for len(calls) > 0 {
		n := min(len(calls), per)
		res, err := a.p.inj.Batch(a.mem, a.scratch+scratchCode, a.scratch+scratchTable, calls[:n])
		out = append(out, res...)
		if err != nil {
			return out, err
		}
		calls = calls[n:]
	}
	return out, nil
}

// mapped reports whether restart makes a mapping itself (the kernel's
// own special mappings are moved, or are there already).
func mapped(v *image.VMA) bool {
	return !isKernelSpecial(v.Special) && v.Special != image.SpecialVSyscall
}

// mapFlags are the mmap flags that remake a mapping at its address.
func mapFlags(v *image.VMA) uint64 {
	flags := uint64(unix.MAP_FIXED | unix.MAP_PRIVATE)
	if v.Flags&image.VMAShared != 0 {
		flags = unix.MAP_FIXED | unix.MAP_SHARED
	}
	if v.Flags&image.VMAGrowsDown != 0 {
		flags |= unix.MAP_GROWSDOWN
	}
	if v.Flags&image.VMAAnon != 0 && !isSharedAnon(v) {
		flags |= unix.MAP_ANONYMOUS
	}
	return flags
}

// fileKey identifies an open file of a mapping, and how it is opened.
type fileKey struct {
	path     string
	dev, ino uint64
	mode     uint64
	via      string // where the task opens it (the gate's)
}

// moveSpecials moves the seed's vDSO and vvar mappings to where the image
// had them, through a free spot when a destination is still occupied.
func (a *addrSpace) moveSpecials(cur []procfs.Mapping, used []span) error {
	names := map[uint32]string{image.SpecialVDSO: "[vdso]", image.SpecialVVar: "[vvar]", image.SpecialVVarVclock: "[vvar_vclock]"}
	type move struct {
		from, to span
		name     string
	}
	var moves []move
	for _, v := range a.mm.VMAs {
		if !isKernelSpecial(v.Special) {
			continue
		}
		i := slices.IndexFunc(cur, func(m procfs.Mapping) bool { return m.Path == names[v.Special] })
		if i < 0 {
			return fmt.Errorf("this kernel has no %s mapping", names[v.Special])
		}
		from := span{cur[i].Start, cur[i].End}
		if from.end-from.start != v.End-v.Start {
			return fmt.Errorf("%s is %d bytes here, %d in the image: another kernel", names[v.Special],
				from.end-from.start, v.End-v.Start)
		}
		moves = append(moves, move{from, span{v.Start, v.End}, names[v.Special]})
	}
	occupied := func(s span, skip int) bool {
		for j, m := range moves {
			if j != skip && m.from.overlaps(s) {
				return true
			}
		}
		return span{a.scratch, a.scratch + scratchSize}.overlaps(s)
	}
	remap := func(m *move, to span) error {
		if m.from == to {
			return nil
		}
		if _, err := a.p.syscall(unix.SYS_MREMAP, m.from.start, m.from.end-m.from.start,
			m.from.end-m.from.start, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, to.start); err != nil {
			return fmt.Errorf("move %s to %#x: %w", m.name, to.start, err)
		}
		if m.name == "[vdso]" {
			// The injection site moves with the vDSO.
			a.p.inj.Site = a.p.inj.Site - m.from.start + to.start
		}
		m.from = to
		return nil
	}
	// First out of each other's way, then home.
	for i := range moves {
		if m := &moves[i]; m.from != m.to && occupied(m.to, i) {
			all := append(slices.Clone(used), span{a.scratch, a.scratch + scratchSize})
			for _, o := range moves {
				all = append(all, o.from)
			}
			tmp, err := freeSpan(m.from.end-m.from.start, all)
			if err != nil {
				return err
			}
			if err := remap(m, span{tmp, tmp + m.from.end - m.from.start}); err != nil {
				return err
			}
		}
	}
	for i := range moves {
		if err := remap(&moves[i], moves[i].to); err != nil {
			return err
		}
	}
	return nil
}

// fileKeyOf names a mapping's file and how to open it, after checking that
// the file at that path is still the one the image saw.
func (a *addrSpace) fileKeyOf(v *image.VMA) (fileKey, error) {
	if isSharedAnon(v) {
		via, err := a.shmem.path(v)
		return fileKey{"", v.Dev, v.Ino, unix.O_RDWR, via}, err
	}
	mode := uint64(unix.O_RDONLY)
	if v.Flags&image.VMAShared != 0 && v.Prot&unix.PROT_WRITE != 0 {
		mode = unix.O_RDWR
	}
	access := uint32(unix.R_OK)
	if mode == unix.O_RDWR {
		access |= unix.W_OK
	}
	// A shared writable mapping writes the file: see "Which file found by
	// path is the file the image saw".
	via, err := a.gate.open(v.Path, access, &expect{dev: v.Dev, ino: v.Ino, id: v.ID, live: mode == unix.O_RDWR})
	if err != nil {
		return fileKey{}, fmt.Errorf("mapped file: %w", err)
	}
	return fileKey{v.Path, v.Dev, v.Ino, mode, via}, nil
}

// openInTask makes the task open path, and returns the fd.
func (a *addrSpace) openInTask(path string, flags uint64) (uint64, error) {
	if len(path)+1 > scratchTable-scratchPaths {
		return 0, fmt.Errorf("path of %d bytes", len(path))
	}
	if _, err := a.mem.WriteAt(append([]byte(path), 0), int64(a.scratch+scratchPaths)); err != nil {
		return 0, err
	}
	atFDCWD := int64(unix.AT_FDCWD)
	return a.p.syscall(unix.SYS_OPENAT, uint64(atFDCWD), a.scratch+scratchPaths, flags|unix.O_CLOEXEC, 0)
}

// writePages writes the contents of pages at addr.
func (a *addrSpace) writePages(addr uint64, data []byte) error {
	if _, err := a.mem.WriteAt(data, int64(addr)); err != nil {
		return fmt.Errorf("write pages at %#x: %w", addr, err)
	}
	return nil
}

// struct prctl_mm_map (include/uapi/linux/prctl.h): eleven u64 boundaries
// (start_code ... env_end), then the auxv pointer and size, the exe fd.
const (
	mmMapAuxv     = 88  // __u64 *auxv
	mmMapAuxvSize = 96  // __u32 auxv_size
	mmMapExeFd    = 100 // __u32 exe_fd
	mmMapSize     = 104 // sizeof(struct prctl_mm_map)
)

// finish sets the mm fields (PR_SET_MM_MAP, which also names the
// executable) and removes the scratch area.
func (a *addrSpace) finish() error {
	m := a.mm
	buf := make([]byte, mmMapSize, mmMapSize+8*len(m.Auxv))
	le := binary.LittleEndian
	for i, v := range []uint64{m.StartCode, m.EndCode, m.StartData, m.EndData, m.StartBrk, m.Brk,
		m.StartStack, m.ArgStart, m.ArgEnd, m.EnvStart, m.EnvEnd} {
		le.PutUint64(buf[8*i:], v)
	}
	for _, w := range m.Auxv {
		buf = le.AppendUint64(buf, w)
	}
	// The struct goes one page into the scratch area (paths use its start)
	// and auxv right behind it.
	at := a.scratch + scratchMM
	le.PutUint64(buf[mmMapAuxv:], at+mmMapSize)
	le.PutUint32(buf[mmMapAuxvSize:], uint32(8*len(m.Auxv)))
	exeFd := ^uint64(0)
	if m.Exe != "" {
		if via, err := a.gate.open(m.Exe, unix.R_OK, nil); err == nil {
			if fd, err := a.openInTask(via, unix.O_RDONLY); err == nil {
				exeFd = fd
				defer a.p.syscall(unix.SYS_CLOSE, fd)
			}
		}
	}
	le.PutUint32(buf[mmMapExeFd:], uint32(exeFd))
	if _, err := a.mem.WriteAt(buf, int64(at)); err != nil {
		return err
	}
	if _, err := a.p.syscall(unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP, at, mmMapSize, 0); err != nil {
		return fmt.Errorf("set mm fields (PR_SET_MM_MAP): %w", err)
	}
	if _, err := a.p.syscall(unix.SYS_MUNMAP, a.scratch, scratchSize); err != nil {
		return fmt.Errorf("unmap scratch area: %w", err)
	}
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
