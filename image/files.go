package image

import "strings"

// Per-task record types of the files subsystem.
const (
	RecFiles = 301 // a process's descriptor table
	RecPipe  = 302 // a pipe's size and buffered bytes, before the FILES that first uses it
)

// MaxPipeSize caps a pipe's buffer (the kernel's default pipe-max-size).
const MaxPipeSize = 1 << 20

// MaxFDs caps a FILES record (the kernel's default nr_open is 1<<20).
const MaxFDs = 1 << 20

// File kinds.
const (
	FileRegular = 1 // a file or directory reopened by path, checked by device and inode
	FileDevice  = 2 // a character device reopened by path (/dev/null ...)
	FilePipe    = 3 // an end of a pipe of the tree, named by Ino (a PIPE record's)
	FileEventfd = 4 // an eventfd; Extra is its count and semaphore flag
	FileEpoll   = 5 // an epoll instance; Extra is (fd, events, data) per watch
	// FileReplaced led outside the tree (a terminal, a pipe or socket to
	// another process): Path is what it was (/dev/pts/0, pipe:[1234]),
	// Extra says what kind of object (External*) and, for a terminal,
	// whether the process's group was its foreground group. Restart puts
	// /dev/null in its place, or the restorer's terminal for a terminal
	// (a shell job). Images before Extra was kept leave it empty.
	FileReplaced = 6
	// FileSocket is an end of a unix socket pair of the tree, named by Ino
	// (a SOCKET record's).
	FileSocket = 7
	// FileDeleted is a file no path names (deleted, or a memfd), named by
	// Dev and Ino (a FILEDATA record's).
	FileDeleted = 8
	// FileFifo is an end of a named pipe: reopened by path, checked by
	// device and inode, its bytes in the PIPE record of the same Ino.
	FileFifo = 9
)

// What a FileReplaced descriptor led to: Extra[0].
const (
	ExternalTerminal = 1
	ExternalPipe     = 2
	ExternalFifo     = 3
	ExternalSocket   = 4
	// Extra[1] of an ExternalTerminal: 1 when it was the controlling
	// terminal of the process and the process's group its foreground group.
	ExternalForeground = 1
)

// ExternalKind says what a FileReplaced descriptor led to, from Extra or,
// in an image that did not record it, from its path.
func (f *FD) ExternalKind() uint64 {
	if len(f.Extra) > 0 {
		return f.Extra[0]
	}
	switch {
	case strings.HasPrefix(f.Path, "/dev/pts/") || strings.HasPrefix(f.Path, "/dev/tty") || f.Path == "/dev/console":
		return ExternalTerminal
	case strings.HasPrefix(f.Path, "pipe:["):
		return ExternalPipe
	case strings.HasPrefix(f.Path, "socket:["):
		return ExternalSocket
	case strings.HasPrefix(f.Path, "/"):
		return ExternalFifo
	}
	return 0
}

// Foreground reports whether a FileReplaced terminal was the process's
// controlling terminal with the process's group in the foreground.
func (f *FD) Foreground() bool {
	return len(f.Extra) > 1 && f.Extra[0] == ExternalTerminal && f.Extra[1] == ExternalForeground
}

// MaxExtra caps the kind-specific words of one descriptor.
const MaxExtra = 3 << 16

// Pipe is a pipe of the tree: its buffer size and the bytes in it at the
// checkpoint, which restart puts back before any task can read them.
type Pipe struct {
	Ino  uint64
	Size uint32
	Data []byte
}

// FD is one descriptor of a process and the open file behind it.
type FD struct {
	Num      uint32
	Kind     uint32
	Flags    uint32 // open flags as fdinfo shows them, O_CLOEXEC included
	Pos      uint64
	Dev, Ino uint64
	Path     string
	Extra    []uint64 // kind-specific state (see the kinds)
	// ID tells the contents of a regular file (FileRegular, not a
	// directory) from version 3 on; nil for other kinds, and where the
	// checkpoint could not read it.
	ID *FileID
}

// FILES payload: u32 count, then per descriptor: num, kind, flags (u32),
// pos, dev, ino (u64), u16 length + path, u32 count + that many u64 of
// kind-specific state; from version 3 the file's identity (see FileID).
// ver is the image's format version.
func appendFiles(b []byte, fds []FD, ver uint32) []byte {
	b = le.AppendUint32(b, uint32(len(fds)))
	for _, f := range fds {
		b = le.AppendUint32(b, f.Num)
		b = le.AppendUint32(b, f.Kind)
		b = le.AppendUint32(b, f.Flags)
		b = le.AppendUint64(b, f.Pos)
		b = le.AppendUint64(b, f.Dev)
		b = le.AppendUint64(b, f.Ino)
		b = appendString(b, f.Path)
		b = le.AppendUint32(b, uint32(len(f.Extra)))
		for _, x := range f.Extra {
			b = le.AppendUint64(b, x)
		}
		if ver >= VersionFileID {
			b = appendFileID(b, f.ID)
		}
	}
	return b
}

// fdMinSize is the size of a descriptor entry of a version-2 record with
// an empty path and no state (see withFileID for later versions).
const fdMinSize = 4*3 + 8*3 + 2 + 4

func decodeFiles(h recHeader, payload []byte, ver uint32) ([]FD, error) {
	d := newDecoder(h, payload)
	n := d.count("nr_fds", MaxFDs, withFileID(fdMinSize, ver))
	fds := make([]FD, n)
	seen := make(map[uint32]bool, n)
	for i := range fds {
		off := d.off()
		f := &fds[i]
		f.Num, f.Kind, f.Flags = d.u32("fd"), d.u32("kind"), d.u32("flags")
		f.Pos, f.Dev, f.Ino = d.u64("pos"), d.u64("dev"), d.u64("ino")
		f.Path = d.str("path", MaxPathLen)
		if x := d.count("nr_extra", MaxExtra, 8); x > 0 {
			f.Extra = make([]uint64, x)
			for j := range f.Extra {
				f.Extra[j] = d.u64("extra")
			}
		}
		f.ID = d.fileID(ver)
		switch {
		case d.err != nil:
		case f.Kind < FileRegular || f.Kind > FileFifo:
			d.failAt(off, ErrInvalid, "fd %d: unknown kind %d", f.Num, f.Kind)
		case f.Kind == FileEventfd && len(f.Extra) != 2, f.Kind == FileEpoll && len(f.Extra)%3 != 0,
			f.Kind == FileReplaced && len(f.Extra) > 2:
			d.failAt(off, ErrInvalid, "fd %d: %d words of state do not fit its kind", f.Num, len(f.Extra))
		case f.Num >= MaxFDs:
			d.failAt(off, ErrInvalid, "fd %d is beyond the limit %d", f.Num, MaxFDs)
		case seen[f.Num]:
			d.failAt(off, ErrDuplicate, "fd %d given twice", f.Num)
		case f.Kind == FileReplaced && len(f.Extra) > 0 && (f.Extra[0] < ExternalTerminal || f.Extra[0] > ExternalSocket):
			d.failAt(off, ErrInvalid, "fd %d: led outside the tree to an object of unknown kind %d", f.Num, f.Extra[0])
		case f.Kind == FileReplaced && len(f.Extra) > 1 && (f.Extra[0] != ExternalTerminal || f.Extra[1] > ExternalForeground):
			d.failAt(off, ErrInvalid, "fd %d: foreground flag %d on an object of kind %d", f.Num, f.Extra[1], f.Extra[0])
		case (f.Kind == FileRegular || f.Kind == FileDevice || f.Kind == FileFifo) && (len(f.Path) == 0 || f.Path[0] != '/'):
			d.failAt(off, ErrInvalid, "fd %d: path %q is not absolute", f.Num, f.Path)
		case f.ID != nil && f.Kind != FileRegular:
			d.failAt(off, ErrInvalid, "fd %d: a file identity on a descriptor of kind %d", f.Num, f.Kind)
		}
		seen[f.Num] = true
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return fds, nil
}

// WriteFiles writes the FILES record of the current task, after checking
// it as ReadFiles would.
func (w *Writer) WriteFiles(fds []FD) error {
	for i := range fds {
		if why := checkFileID(fds[i].ID, w.version); why != "" {
			return w.refuse(RecFiles, "fd %d (%s): %s", fds[i].Num, fds[i].Path, why)
		}
	}
	return w.writeChecked(RecFiles, appendFiles(nil, fds, w.version), func(h recHeader, p []byte) error {
		_, err := decodeFiles(h, p, w.version)
		return err
	})
}

// ReadFiles decodes the FILES record rec that NextRecord returned.
func (r *Reader) ReadFiles(rec Record) ([]FD, error) {
	return readSmall(r, rec, func(h recHeader, p []byte) ([]FD, error) { return decodeFiles(h, p, r.hdr.Version) })
}

// PIPE payload: ino u64, size u32, u32 length, the buffered bytes.
func appendPipe(b []byte, p *Pipe) []byte {
	b = le.AppendUint64(b, p.Ino)
	b = le.AppendUint32(b, p.Size)
	b = le.AppendUint32(b, uint32(len(p.Data)))
	return append(b, p.Data...)
}

func decodePipe(h recHeader, payload []byte) (*Pipe, error) {
	d := newDecoder(h, payload)
	p := &Pipe{Ino: d.u64("pipe inode"), Size: d.u32("pipe size")}
	n := d.count("buffered bytes", MaxPipeSize, 1)
	p.Data = append([]byte(nil), d.bytes(n, "buffered bytes")...)
	if d.err == nil && (p.Size > MaxPipeSize || uint32(n) > p.Size) {
		d.fail(ErrInvalid, "pipe of %d bytes holding %d", p.Size, n)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return p, nil
}

// WritePipe writes a PIPE record for the current task.
func (w *Writer) WritePipe(p *Pipe) error { return w.writeSmall(RecPipe, appendPipe(nil, p)) }

// ReadPipe decodes the PIPE record rec that NextRecord returned.
func (r *Reader) ReadPipe(rec Record) (*Pipe, error) { return readSmall(r, rec, decodePipe) }
