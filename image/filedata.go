package image

// RecFileData carries a file the tree holds open but that no path names any
// more: a deleted file, or a memfd. It comes before the FILES record of the
// first process that holds it; FILES entries of kind FileDeleted name it by
// device and inode.
const RecFileData = 304

// MaxFileData caps the contents an image carries for one such file.
const MaxFileData = 32 << 20

// MaxMemfdName caps a memfd's name (the kernel's limit is 249 bytes).
const MaxMemfdName = 255

// FileData is an unlinked file and its contents.
type FileData struct {
	Dev, Ino uint64 // the original's identity, as FILES entries name it
	Mode     uint32 // permission bits
	Uid, Gid uint32 // its owner
	Memfd    bool   // a memfd: made again with memfd_create(Name)
	Seals    uint32 // a memfd's seals (F_GET_SEALS)
	Name     string // the memfd's name; else the path it had, whose directory holds the new one
	Size     uint64 // the file's size; Data may stop short of it (a hole)
	Data     []byte
}

// FILEDATA payload: dev, ino (u64), mode, uid, gid, flags (1 memfd), seals (u32),
// u16 length + name, size u64, u32 length + data.
func appendFileData(b []byte, f *FileData) []byte {
	b = le.AppendUint64(b, f.Dev)
	b = le.AppendUint64(b, f.Ino)
	b = le.AppendUint32(b, f.Mode)
	b = le.AppendUint32(b, f.Uid)
	b = le.AppendUint32(b, f.Gid)
	var flags uint32
	if f.Memfd {
		flags = 1
	}
	b = le.AppendUint32(b, flags)
	b = le.AppendUint32(b, f.Seals)
	b = appendString(b, f.Name)
	b = le.AppendUint64(b, f.Size)
	b = le.AppendUint32(b, uint32(len(f.Data)))
	return append(b, f.Data...)
}

func decodeFileData(h recHeader, payload []byte) (*FileData, error) {
	d := newDecoder(h, payload)
	f := &FileData{Dev: d.u64("dev"), Ino: d.u64("ino"), Mode: d.u32("mode"), Uid: d.u32("uid"), Gid: d.u32("gid")}
	flags := d.u32("flags")
	f.Memfd, f.Seals = flags&1 != 0, d.u32("seals")
	f.Name = d.str("name", MaxPathLen)
	f.Size = d.u64("size")
	n := d.count("data length", MaxFileData, 1)
	f.Data = append([]byte(nil), d.bytes(n, "file data")...)
	switch {
	case d.err != nil:
	case flags&^1 != 0:
		d.fail(ErrInvalid, "file %d: unknown flags %#x", f.Ino, flags)
	case f.Mode&^0o7777 != 0:
		d.fail(ErrInvalid, "file %d: mode %#o", f.Ino, f.Mode)
	case uint64(len(f.Data)) > f.Size:
		d.fail(ErrInvalid, "file %d of %d bytes carries %d", f.Ino, f.Size, len(f.Data))
	case f.Size > MaxFileData:
		d.fail(ErrTooLarge, "file %d of %d bytes exceeds the limit %d", f.Ino, f.Size, MaxFileData)
	case f.Memfd && len(f.Name) > MaxMemfdName:
		d.fail(ErrInvalid, "memfd name of %d bytes", len(f.Name))
	case !f.Memfd && (len(f.Name) == 0 || f.Name[0] != '/'):
		d.fail(ErrInvalid, "file %d: path %q is not absolute", f.Ino, f.Name)
	case !f.Memfd && f.Seals != 0:
		d.fail(ErrInvalid, "file %d: seals on a file that is no memfd", f.Ino)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return f, nil
}

// WriteFileData writes a FILEDATA record for the current task.
func (w *Writer) WriteFileData(f *FileData) error {
	return w.writeSmall(RecFileData, appendFileData(nil, f))
}

// ReadFileData decodes the FILEDATA record rec that NextRecord returned.
func (r *Reader) ReadFileData(rec Record) (*FileData, error) {
	return readSmall(r, rec, decodeFileData)
}
