package image

import (
	"bytes"
	"fmt"
	"time"
)

// FileID tells the contents of a regular file that an image names by path
// (a mapped file, a file open by path) from another file's, on any
// machine: rsync's quick check (size and modification time) and, for an
// ELF file, the GNU build-id note its linker computed from its contents.
// Device and inode, kept beside it, tell the very same file on the
// machine of the checkpoint; a FileID also recognizes a faithful copy of
// it elsewhere (the same package version installed, cp -p, rsync -a),
// and a file rewritten in place. Records carry one from format version 3
// (VersionFileID); older images have none.
type FileID struct {
	Size      uint64
	MtimeSec  int64
	MtimeNsec uint32 // below 1e9
	// BuildID is the descriptor of the file's NT_GNU_BUILD_ID note; nil
	// for a file that is no ELF file or has no such note.
	BuildID []byte
}

// VersionFileID is the first format version whose MM and FILES records
// carry a FileID per mapping and descriptor.
const VersionFileID = 3

// MaxBuildID caps a build-id: its length is one byte of the format.
// Linkers make 8 (xxhash), 16 (md5, uuid) or 20 (sha1) bytes.
const MaxBuildID = 255

// Mtime returns the file's modification time.
func (id *FileID) Mtime() time.Time { return time.Unix(id.MtimeSec, int64(id.MtimeNsec)) }

// Equal reports whether a and b say the same of a file (both nil counts).
func (a *FileID) Equal(b *FileID) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Size == b.Size && a.MtimeSec == b.MtimeSec && a.MtimeNsec == b.MtimeNsec && bytes.Equal(a.BuildID, b.BuildID)
}

// A FileID in a record (version 3 on):
//
//	u8 0                          none recorded
//	u8 1, size u64, mtime seconds i64, mtime nanoseconds u32,
//	  u8 n, n bytes of build-id   (n = 0: no build-id)
//
// The writer refuses a build-id longer than MaxBuildID before encoding.
func appendFileID(b []byte, id *FileID) []byte {
	if id == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = le.AppendUint64(b, id.Size)
	b = le.AppendUint64(b, uint64(id.MtimeSec))
	b = le.AppendUint32(b, id.MtimeNsec)
	b = append(b, byte(len(id.BuildID)))
	return append(b, id.BuildID...)
}

// withFileID is the least size of an entry of base bytes in a record of
// version ver: from VersionFileID on, it carries at least the marker.
func withFileID(base int, ver uint32) int {
	if ver >= VersionFileID {
		return base + 1
	}
	return base
}

// fileID reads a FileID of a record of version ver: nothing before
// VersionFileID.
func (d *decoder) fileID(ver uint32) *FileID {
	if ver < VersionFileID {
		return nil
	}
	off := d.off()
	switch has := d.u8("file identity marker"); {
	case d.err != nil, has == 0:
		return nil
	case has != 1:
		d.failAt(off, ErrInvalid, "file identity marker %d is neither 0 nor 1", has)
		return nil
	}
	id := &FileID{Size: d.u64("file size"), MtimeSec: int64(d.u64("file mtime seconds"))}
	off = d.off()
	id.MtimeNsec = d.u32("file mtime nanoseconds")
	if d.err == nil && id.MtimeNsec >= 1e9 {
		d.failAt(off, ErrInvalid, "file mtime nanoseconds %d is not below a second", id.MtimeNsec)
	}
	if n := int(d.u8("build-id length")); n > 0 {
		id.BuildID = bytes.Clone(d.bytes(n, "build-id"))
	}
	if d.err != nil {
		return nil
	}
	return id
}

// checkFileID says why a Writer of version ver cannot write id, or "".
func checkFileID(id *FileID, ver uint32) string {
	switch {
	case id == nil:
		return ""
	case ver < VersionFileID:
		return fmt.Sprintf("a file identity needs format version %d", VersionFileID)
	case len(id.BuildID) > MaxBuildID:
		return fmt.Sprintf("a build-id of %d bytes, more than %d", len(id.BuildID), MaxBuildID)
	}
	return ""
}
