package image

// RecFiles is the per-process record of its file descriptor table.
const RecFiles = 301

// MaxFDs caps a FILES record (the kernel's default nr_open is 1<<20).
const MaxFDs = 1 << 20

// File kinds.
const (
	FileRegular = 1 // a file or directory reopened by path, checked by device and inode
	FileDevice  = 2 // a character device reopened by path (/dev/null ...)
)

// FD is one descriptor of a process and the open file behind it.
type FD struct {
	Num      uint32
	Kind     uint32
	Flags    uint32 // open flags as fdinfo shows them, O_CLOEXEC included
	Pos      uint64
	Dev, Ino uint64
	Path     string
}

// FILES payload: u32 count, then per descriptor: num, kind, flags (u32),
// pos, dev, ino (u64), u16 length + path.
func appendFiles(b []byte, fds []FD) []byte {
	b = le.AppendUint32(b, uint32(len(fds)))
	for _, f := range fds {
		b = le.AppendUint32(b, f.Num)
		b = le.AppendUint32(b, f.Kind)
		b = le.AppendUint32(b, f.Flags)
		b = le.AppendUint64(b, f.Pos)
		b = le.AppendUint64(b, f.Dev)
		b = le.AppendUint64(b, f.Ino)
		b = appendString(b, f.Path)
	}
	return b
}

func decodeFiles(h recHeader, payload []byte) ([]FD, error) {
	d := newDecoder(h, payload)
	n := d.count("nr_fds", MaxFDs, 4*3+8*3+2)
	fds := make([]FD, n)
	seen := make(map[uint32]bool, n)
	for i := range fds {
		off := d.off()
		f := &fds[i]
		f.Num, f.Kind, f.Flags = d.u32("fd"), d.u32("kind"), d.u32("flags")
		f.Pos, f.Dev, f.Ino = d.u64("pos"), d.u64("dev"), d.u64("ino")
		f.Path = d.str("path", MaxPathLen)
		switch {
		case d.err != nil:
		case f.Kind != FileRegular && f.Kind != FileDevice:
			d.failAt(off, ErrInvalid, "fd %d: unknown kind %d", f.Num, f.Kind)
		case f.Num >= MaxFDs:
			d.failAt(off, ErrInvalid, "fd %d is beyond the limit %d", f.Num, MaxFDs)
		case seen[f.Num]:
			d.failAt(off, ErrDuplicate, "fd %d given twice", f.Num)
		case len(f.Path) == 0 || f.Path[0] != '/':
			d.failAt(off, ErrInvalid, "fd %d: path %q is not absolute", f.Num, f.Path)
		}
		seen[f.Num] = true
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return fds, nil
}

// WriteFiles writes the FILES record of the current task.
func (w *Writer) WriteFiles(fds []FD) error { return w.writeSmall(RecFiles, appendFiles(nil, fds)) }

// ReadFiles decodes the FILES record rec that NextRecord returned.
func (r *Reader) ReadFiles(rec Record) ([]FD, error) {
	h, payload, err := r.small(rec)
	if err != nil {
		return nil, err
	}
	fds, err := decodeFiles(h, payload)
	if err != nil {
		return nil, r.fail(err)
	}
	return fds, nil
}
