// Package fileid reads what tells a regular file's contents from another
// file's (image.FileID): its size and modification time, which every
// file has, and the GNU build-id note of an ELF file, which its linker
// computed from its contents. Checkpoint records it for each file an
// image names by path; restart compares it with the file it finds.
package fileid

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
)

// readBudget bounds the bytes BuildID reads from a file: its ELF header,
// program and section headers, section names and notes, which take a few
// KiB in any real binary. A file that needs more (a hostile or broken
// one) is taken to have no build-id.
const readBudget = 1 << 20

// maxNotes bounds the bytes of one note segment or section read.
const maxNotes = 64 << 10

// ntGNUBuildID is NT_GNU_BUILD_ID, the type of the build-id note of owner
// "GNU".
const ntGNUBuildID = 3

// errBudget stops a read that would go past readBudget.
var errBudget = errors.New("fileid: the ELF headers and notes exceed the read budget")

// Stat returns the identity that a regular file's status gives, without
// its build-id.
func Stat(st *unix.Stat_t) *image.FileID {
	return &image.FileID{Size: uint64(st.Size), MtimeSec: st.Mtim.Sec, MtimeNsec: uint32(st.Mtim.Nsec)}
}

// Statx is Stat from statx(2), which must have returned STATX_SIZE and
// STATX_MTIME.
func Statx(st *unix.Statx_t) *image.FileID {
	return &image.FileID{Size: st.Size, MtimeSec: st.Mtime.Sec, MtimeNsec: st.Mtime.Nsec}
}

// pseudoFS are the filesystems whose files the kernel makes up as they are
// read (/proc/kmsg, a tracing pipe, a sensor in sysfs): reading one may
// take what another reader was owed or cost a device's time, and none
// holds a build-id.
var pseudoFS = map[int64]bool{
	unix.PROC_SUPER_MAGIC: true, unix.SYSFS_MAGIC: true, unix.DEBUGFS_MAGIC: true, unix.TRACEFS_MAGIC: true,
	unix.SECURITYFS_MAGIC: true, unix.EFIVARFS_MAGIC: true, unix.BPF_FS_MAGIC: true, unix.CGROUP_SUPER_MAGIC: true,
	unix.CGROUP2_SUPER_MAGIC: true, unix.PSTOREFS_MAGIC: true, unix.SELINUX_MAGIC: true, unix.SMACK_MAGIC: true,
	unix.BINFMTFS_MAGIC: true, unix.NSFS_MAGIC: true, unix.RDTGROUP_SUPER_MAGIC: true,
	0x62656570: true, // configfs
	0x65735543: true, // fusectl
}

// Readable reports whether a regular file of the filesystem st describes
// may be read for its build-id: not one of the pseudo filesystems.
func Readable(st *unix.Statfs_t) bool { return !pseudoFS[int64(st.Type)] }

// BuildID returns the GNU build-id of the ELF file r: nil for a file that
// is no ELF file, or an ELF file without a build-id note, or one whose
// headers do not fit the read budget or do not parse. Only the headers
// and the notes are read, never the whole file. An error is an I/O error
// of r.
func BuildID(r io.ReaderAt) ([]byte, error) {
	var magic [4]byte
	switch _, err := r.ReadAt(magic[:], 0); {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return nil, nil // shorter than an ELF header
	case err != nil:
		return nil, err
	case string(magic[:]) != elf.ELFMAG:
		return nil, nil
	}
	b := &budget{r: r, left: readBudget}
	f, err := elf.NewFile(b)
	if err != nil {
		return nil, ioError(err)
	}
	// The loader's view first: every mapped binary has its notes in
	// PT_NOTE segments. Sections only for a file without any.
	var sawNotes bool
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		sawNotes = true
		id, err := notes(p.Open(), p.Filesz, p.Align, f.ByteOrder)
		if id != nil || err != nil {
			return id, ioError(err)
		}
	}
	if sawNotes {
		return nil, nil
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		id, err := notes(s.Open(), s.Size, s.Addralign, f.ByteOrder)
		if id != nil || err != nil {
			return id, ioError(err)
		}
	}
	return nil, nil
}

// ioError keeps the errors of the underlying reader and drops the rest
// (format errors, the read budget): a file that does not parse has no
// build-id.
func ioError(err error) error {
	var fe *elf.FormatError
	switch {
	case err == nil, errors.As(err, &fe), errors.Is(err, errBudget),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil
	}
	return err
}

// notes looks for the GNU build-id among the notes of one segment or
// section of size bytes, whose entries are aligned to align (4, or 8 in
// some 64-bit objects).
func notes(r io.ReadSeeker, size, align uint64, bo interface{ Uint32([]byte) uint32 }) ([]byte, error) {
	if size > maxNotes {
		size = maxNotes
	}
	buf := make([]byte, size)
	n, err := io.ReadFull(r, buf)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	buf = buf[:n]
	// Offsets within a note are aligned from its start: the name follows
	// the 12-byte header, the descriptor and the next note each start at
	// an aligned offset.
	pad := func(n uint64) uint64 {
		if align == 8 {
			return (n + 7) &^ 7
		}
		return (n + 3) &^ 3
	}
	for len(buf) >= 12 {
		namesz, descsz, typ := uint64(bo.Uint32(buf[0:])), uint64(bo.Uint32(buf[4:])), bo.Uint32(buf[8:])
		descAt := pad(12 + namesz)
		if namesz > maxNotes || descsz > maxNotes || descAt+descsz > uint64(len(buf)) {
			return nil, nil // cut short, or not notes at all
		}
		name, desc := buf[12:12+namesz], buf[descAt:descAt+descsz]
		if typ == ntGNUBuildID && bytes.Equal(name, []byte("GNU\x00")) && len(desc) > 0 && len(desc) <= image.MaxBuildID {
			return bytes.Clone(desc), nil
		}
		next := pad(descAt + descsz)
		if next > uint64(len(buf)) {
			return nil, nil
		}
		buf = buf[next:]
	}
	return nil, nil
}

// budget is a ReaderAt that refuses to read more than left bytes in all:
// debug/elf reads what the headers claim, and a hostile file's headers may
// claim the whole file.
type budget struct {
	r    io.ReaderAt
	left int64
}

func (b *budget) ReadAt(p []byte, off int64) (int, error) {
	if int64(len(p)) > b.left {
		return 0, errBudget
	}
	b.left -= int64(len(p))
	return b.r.ReadAt(p, off)
}
