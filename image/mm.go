package image

import (
	"io"
	"math"
)

// Per-task record types of the memory and CPU subsystems.
const (
	RecRegs  = 201 // one per thread: general registers and the xsave area
	RecMM    = 401 // one per process: the mm fields and every mapping
	RecPages = 402 // page contents: an address, then whole pages
)

// Caps of the memory records.
const (
	MaxVMAs      = 1 << 16 // the kernel's default vm.max_map_count is 65530
	MaxPathLen   = 4096    // PATH_MAX
	MaxAuxvWords = 256
	MaxXSave     = 1 << 16
	// MaxPagesRecord caps one PAGES record, so that a reader streaming
	// it needs a bounded buffer; long runs are cut into several.
	MaxPagesRecord = 4 << 20
)

// VMA flags.
const (
	VMAShared    = 1 << 0 // MAP_SHARED (else private)
	VMAAnon      = 1 << 1 // no backing file
	VMAGrowsDown = 1 << 2 // the main stack
)

// Special mappings the kernel makes, which restart moves rather than maps.
const (
	SpecialNone = iota
	SpecialHeap
	SpecialStack
	SpecialVDSO
	SpecialVVar
	SpecialVVarVclock
	SpecialVSyscall
)

// MM is a process's address space: the fields PR_SET_MM_MAP restores, and
// every mapping. The pages of its private and anonymous mappings follow in
// PAGES records.
type MM struct {
	StartCode, EndCode, StartData, EndData uint64
	StartBrk, Brk, StartStack              uint64
	ArgStart, ArgEnd, EnvStart, EnvEnd     uint64
	Auxv                                   []uint64
	Exe                                    string
	VMAs                                   []VMA
}

// VMA is one mapping.
type VMA struct {
	Start, End uint64
	Prot       uint32 // PROT_READ|PROT_WRITE|PROT_EXEC
	Flags      uint32 // VMA*
	Special    uint32 // Special*
	Pgoff      uint64 // file offset in bytes
	Dev, Ino   uint64 // the backing file's device and inode
	Path       string // the backing file, or the name /proc/<pid>/maps shows
	// ID tells the backing file's contents (version 3 on): none for an
	// anonymous mapping, nor where the checkpoint could not read it.
	ID *FileID
}

// Regs is the CPU state of one thread.
type Regs struct {
	// GP is struct user_regs_struct in kernel order (r15 ... gs), which
	// holds rip, rsp, the flags, fs_base and gs_base, and orig_rax, rax of
	// a system call the thread was stopped in.
	GP    [27]uint64
	XSave []byte // NT_X86_XSTATE
}

// MM record payload:
//
//	11 × u64 fields (start_code ... env_end, in the order of MM)
//	u32 nr_auxv, nr_auxv × u64
//	u16 len + exe path
//	u32 nr_vmas, then per VMA: start, end u64; prot, flags, special u32;
//	  pgoff, dev, ino u64; u16 len + path; from version 3 the file's
//	  identity (see FileID)
//
// ver is the image's format version.
func appendMM(b []byte, m *MM, ver uint32) []byte {
	for _, v := range []uint64{m.StartCode, m.EndCode, m.StartData, m.EndData,
		m.StartBrk, m.Brk, m.StartStack, m.ArgStart, m.ArgEnd, m.EnvStart, m.EnvEnd} {
		b = le.AppendUint64(b, v)
	}
	b = le.AppendUint32(b, uint32(len(m.Auxv)))
	for _, v := range m.Auxv {
		b = le.AppendUint64(b, v)
	}
	b = appendString(b, m.Exe)
	b = le.AppendUint32(b, uint32(len(m.VMAs)))
	for i := range m.VMAs {
		v := &m.VMAs[i]
		b = le.AppendUint64(b, v.Start)
		b = le.AppendUint64(b, v.End)
		b = le.AppendUint32(b, v.Prot)
		b = le.AppendUint32(b, v.Flags)
		b = le.AppendUint32(b, v.Special)
		b = le.AppendUint64(b, v.Pgoff)
		b = le.AppendUint64(b, v.Dev)
		b = le.AppendUint64(b, v.Ino)
		b = appendString(b, v.Path)
		if ver >= VersionFileID {
			b = appendFileID(b, v.ID)
		}
	}
	return b
}

// vmaMinSize is the size of a VMA entry of a version-2 record with an
// empty path (see withFileID for later versions).
const vmaMinSize = 8*2 + 4*3 + 8*3 + 2

func decodeMM(h recHeader, payload []byte, ver uint32) (*MM, error) {
	d := newDecoder(h, payload)
	m := &MM{}
	for _, p := range []*uint64{&m.StartCode, &m.EndCode, &m.StartData, &m.EndData,
		&m.StartBrk, &m.Brk, &m.StartStack, &m.ArgStart, &m.ArgEnd, &m.EnvStart, &m.EnvEnd} {
		*p = d.u64("mm field")
	}
	n := d.count("nr_auxv", MaxAuxvWords, 8)
	m.Auxv = make([]uint64, n)
	for i := range m.Auxv {
		m.Auxv[i] = d.u64("auxv word")
	}
	m.Exe = d.str("exe path", MaxPathLen)
	n = d.count("nr_vmas", MaxVMAs, withFileID(vmaMinSize, ver))
	m.VMAs = make([]VMA, n)
	var prevEnd uint64
	for i := range m.VMAs {
		v := &m.VMAs[i]
		off := d.off()
		v.Start, v.End = d.u64("vma start"), d.u64("vma end")
		v.Prot, v.Flags, v.Special = d.u32("vma prot"), d.u32("vma flags"), d.u32("vma special")
		v.Pgoff, v.Dev, v.Ino = d.u64("vma pgoff"), d.u64("vma dev"), d.u64("vma ino")
		v.Path = d.str("vma path", MaxPathLen)
		v.ID = d.fileID(ver)
		if d.err != nil {
			break
		}
		switch {
		case v.End <= v.Start:
			d.failAt(off, ErrLength, "vma %d: empty or inverted range %#x-%#x", i, v.Start, v.End)
		case v.Start < prevEnd:
			d.failAt(off, ErrLength, "vma %d: %#x-%#x overlaps or precedes the previous mapping", i, v.Start, v.End)
		case v.Prot&^7 != 0 || v.Flags&^7 != 0 || v.Special > SpecialVSyscall:
			d.failAt(off, ErrLength, "vma %d: unknown protection, flags or kind", i)
		case v.ID != nil && v.Flags&VMAAnon != 0:
			d.failAt(off, ErrInvalid, "vma %d: an anonymous mapping with a file identity", i)
		}
		prevEnd = v.End
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return m, nil
}

// Regs record payload: 27 × u64 general registers, u32 xsave length, the
// xsave bytes.
func appendRegs(b []byte, r *Regs) []byte {
	for _, v := range r.GP {
		b = le.AppendUint64(b, v)
	}
	b = le.AppendUint32(b, uint32(len(r.XSave)))
	return append(b, r.XSave...)
}

func decodeRegs(h recHeader, payload []byte) (*Regs, error) {
	d := newDecoder(h, payload)
	r := &Regs{}
	for i := range r.GP {
		r.GP[i] = d.u64("register")
	}
	n := d.count("xsave length", MaxXSave, 1)
	r.XSave = append([]byte(nil), d.bytes(n, "xsave area")...)
	if err := d.end(); err != nil {
		return nil, err
	}
	return r, nil
}

// WriteMM writes the MM record of the current task, after checking it as
// ReadMM would.
func (w *Writer) WriteMM(m *MM) error {
	for i := range m.VMAs {
		if why := checkFileID(m.VMAs[i].ID, w.version); why != "" {
			return w.refuse(RecMM, "vma %d (%s): %s", i, m.VMAs[i].Path, why)
		}
	}
	return w.writeChecked(RecMM, appendMM(nil, m, w.version), func(h recHeader, p []byte) error {
		_, err := decodeMM(h, p, w.version)
		return err
	})
}

// WriteRegs writes the REGS record of the current task.
func (w *Writer) WriteRegs(r *Regs) error { return w.writeSmall(RecRegs, appendRegs(nil, r)) }

// WritePages writes the contents of whole pages starting at addr.
func (w *Writer) WritePages(addr uint64, data []byte) error {
	if err := w.WriteRecord(RecPages, int64(8+len(data))); err != nil {
		return err
	}
	var a [8]byte
	le.PutUint64(a[:], addr)
	if _, err := w.Write(a[:]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// WritePagesLater writes a PAGES record for n bytes of whole pages starting
// at addr, whose contents the underlying Deferrer will produce: it is told
// with DeferPages(addr, n) where they go.
func (w *Writer) WritePagesLater(addr uint64, n int) error {
	if err := w.WriteRecord(RecPages, int64(8+n)); err != nil {
		return err
	}
	var a [8]byte
	le.PutUint64(a[:], addr)
	if _, err := w.Write(a[:]); err != nil {
		return err
	}
	return w.deferPages(addr, int64(n))
}

// writeChecked writes a per-task record whose payload check, the
// Reader's decoder, accepts: a Writer never writes what a Reader refuses.
func (w *Writer) writeChecked(typ uint32, payload []byte, check func(recHeader, []byte) error) error {
	if w.err != nil {
		return w.err
	}
	h := recHeader{typ: typ, len: uint32(len(payload) + HeaderSize), off: w.off}
	if len(payload) <= math.MaxUint32-HeaderSize {
		if err := check(h, payload); err != nil {
			w.err = err
			return err
		}
	}
	return w.writeSmall(typ, payload)
}

// refuse fails the Writer with an ErrInvalid about a record of type typ
// that the format cannot hold.
func (w *Writer) refuse(typ uint32, format string, args ...any) error {
	if w.err == nil {
		w.err = formatErr(recordName(typ), w.off, ErrInvalid, format, args...)
	}
	return w.err
}

func (w *Writer) writeSmall(typ uint32, payload []byte) error {
	if err := w.WriteRecord(typ, int64(len(payload))); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// ReadMM decodes the MM record rec that NextRecord returned.
func (r *Reader) ReadMM(rec Record) (*MM, error) {
	return readSmall(r, rec, func(h recHeader, p []byte) (*MM, error) { return decodeMM(h, p, r.hdr.Version) })
}

// ReadRegs decodes the REGS record rec that NextRecord returned.
func (r *Reader) ReadRegs(rec Record) (*Regs, error) { return readSmall(r, rec, decodeRegs) }

// ReadPagesAddr reads the address that opens a PAGES record; the page
// bytes follow through Read. It checks the run is whole pages.
func (r *Reader) ReadPagesAddr(rec Record, pageSize int) (uint64, error) {
	data := rec.Size - 8
	if rec.Size < 8 || rec.Size > MaxPagesRecord+8 || data%int64(pageSize) != 0 {
		return 0, r.fail(formatErr("PAGES", rec.Offset, ErrLength,
			"a PAGES record holds %d bytes, not an address and whole pages of %d bytes (at most %d)",
			rec.Size, pageSize, MaxPagesRecord))
	}
	var a [8]byte
	if _, err := io.ReadFull(r, a[:]); err != nil {
		return 0, r.ioErr(err, "PAGES", "the address")
	}
	addr := le.Uint64(a[:])
	if addr%uint64(pageSize) != 0 {
		return 0, r.fail(formatErr("PAGES", rec.Offset, ErrLength, "address %#x is not page aligned", addr))
	}
	return addr, nil
}

// readSmall reads a per-task record of bounded size and decodes it; a
// decoding error is sticky like any other.
func readSmall[T any](r *Reader, rec Record, decode func(recHeader, []byte) (T, error)) (T, error) {
	var zero T
	h, payload, err := r.small(rec)
	if err != nil {
		return zero, err
	}
	v, err := decode(h, payload)
	if err != nil {
		return zero, r.fail(err)
	}
	return v, nil
}

// small reads the whole payload of a per-task record of bounded size.
func (r *Reader) small(rec Record) (recHeader, []byte, error) {
	h := recHeader{typ: rec.Type, len: uint32(rec.Size + HeaderSize), off: rec.Offset}
	if rec.Size > MaxRecordSize {
		return h, nil, r.fail(formatErr(recordName(rec.Type), rec.Offset, ErrTooLarge,
			"record of %d bytes exceeds the limit %d", rec.Size, MaxRecordSize))
	}
	// Grow by chunks as bytes arrive, so that a record claiming more than
	// the stream holds costs no more than one chunk.
	buf := make([]byte, 0, min(rec.Size, readChunk))
	for int64(len(buf)) < rec.Size {
		n := min(rec.Size-int64(len(buf)), readChunk)
		buf = append(buf, make([]byte, n)...)
		if _, err := io.ReadFull(r, buf[len(buf)-int(n):]); err != nil {
			return h, nil, r.ioErr(err, recordName(rec.Type), "the record")
		}
	}
	return h, buf, nil
}
