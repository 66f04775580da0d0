package image

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// readChunk bounds how much a Reader allocates ahead of the bytes that
// actually arrive: a record that claims 64 MiB in a 100-byte stream costs
// at most one chunk (the approach of Go's internal/saferio).
const readChunk = 1 << 20

type readerStage int

const (
	atHeader readerStage = iota
	atPids
	atTree
	atTasks
	atEnd // TAIL read and verified
)

// Reader reads an image as a stream, validating every record before it
// returns it. Call Header, Pids, Tree, then NextTask until it returns
// io.EOF; calling a later method first reads (and validates) what comes
// before it, and an earlier one returns what was already read. Errors are
// sticky.
//
// Per-task records of later subsystems (types MinTaskRecord to
// MaxTaskRecord) that follow a TASK record are skipped by NextTask, their
// bytes still checksummed; code that knows them reads them with NextRecord
// and Read before calling NextTask again.
type Reader struct {
	br    *bufio.Reader
	crc   uint32 // CRC32C of every byte consumed before the TAIL record
	off   int64  // bytes consumed
	err   error
	stage readerStage

	hdr  *Header
	pids *Pids
	info *pidsInfo
	tree *Tree
	next int // TASK records read

	pending *recHeader // a record header read ahead by NextRecord
	rec     recHeader  // the per-task record NextRecord returned
	left    int64      // its unread payload bytes
	skipped int        // per-task records skipped (tests use it)

	scratch []byte // reused for small payloads: decoders copy what they keep
}

// NewReader returns a Reader that reads an image from r. It reads ahead of
// what it has decoded, so r should hold nothing after the image.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Offset returns the number of bytes of the stream consumed so far.
func (r *Reader) Offset() int64 { return r.off }

// fail makes err sticky.
func (r *Reader) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return r.err
}

// ioErr turns an error of the underlying reader into this package's terms:
// an early end is ErrTruncated, anything else is passed on with context.
func (r *Reader) ioErr(err error, sec, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return r.fail(formatErr(sec, r.off, ErrTruncated, "the stream ends inside %s", what))
	}
	return r.fail(fmt.Errorf("image: reading %s at byte %d: %w", sec, r.off, err))
}

// readFull reads len(p) bytes, folding them into the checksum if hash.
func (r *Reader) readFull(p []byte, hash bool, sec, what string) error {
	n, err := io.ReadFull(r.br, p)
	if hash {
		r.crc = crc32.Update(r.crc, castagnoli, p[:n])
	}
	r.off += int64(n)
	if err != nil {
		return r.ioErr(err, sec, what)
	}
	return nil
}

// nextHeader reads the next record header; sec names what the caller
// expects there, for the error if the stream ends. A TAIL header is not
// folded into the checksum, which covers the bytes before it.
func (r *Reader) nextHeader(sec string) (recHeader, error) {
	if h := r.pending; h != nil {
		r.pending = nil
		return *h, nil
	}
	if r.err != nil {
		return recHeader{}, r.err
	}
	var b [HeaderSize]byte
	h := recHeader{off: r.off}
	if err := r.readFull(b[:], false, sec, "a record header"); err != nil {
		if r.off == h.off {
			// Cut exactly at a record boundary: say what was missing.
			r.err = formatErr(sec, h.off, ErrTruncated, "the stream ends where the %s record should start", sec)
		}
		return h, r.err
	}
	h.typ, h.len = le.Uint32(b[0:]), le.Uint32(b[4:])
	if h.typ != RecTail {
		r.crc = crc32.Update(r.crc, castagnoli, b[:])
	}
	if h.len < HeaderSize {
		return h, r.fail(formatErr(recordName(h.typ), h.off, ErrLength,
			"record length %d is shorter than its own header", h.len))
	}
	return h, nil
}

// readPayload reads the payload of a record this package decodes in
// memory, after checking its length against the cap. Memory grows with the
// bytes that arrive, not with the length claimed.
func (r *Reader) readPayload(h recHeader) ([]byte, error) {
	sec := recordName(h.typ)
	n := int(h.len) - HeaderSize
	if n > MaxRecordSize {
		return nil, r.fail(formatErr(sec, h.off, ErrTooLarge,
			"record length %d exceeds the limit %d", h.len, MaxRecordSize))
	}
	if n <= 4096 {
		// The common case (TASK records): no allocation per record.
		if r.scratch == nil {
			r.scratch = make([]byte, 4096)
		}
		buf := r.scratch[:n]
		return buf, r.readFull(buf, true, sec, "the record")
	}
	var buf []byte
	for len(buf) < n {
		k := min(n-len(buf), readChunk)
		buf = slices.Grow(buf, k)
		if err := r.readFull(buf[len(buf):len(buf)+k], true, sec, "the record"); err != nil {
			return nil, err
		}
		buf = buf[:len(buf)+k]
	}
	return buf, nil
}

// discard consumes n bytes through the checksum without copying them.
func (r *Reader) discard(n int64, sec string) error {
	for n > 0 {
		b, err := r.br.Peek(int(min(n, int64(r.br.Size()))))
		r.crc = crc32.Update(r.crc, castagnoli, b)
		r.br.Discard(len(b))
		r.off += int64(len(b))
		n -= int64(len(b))
		if err != nil && n > 0 {
			return r.ioErr(err, sec, "the record")
		}
	}
	return nil
}

// expect reads the next record, which must be of type typ, and returns its
// header and payload.
func (r *Reader) expect(typ uint32) (recHeader, []byte, error) {
	sec := recordName(typ)
	h, err := r.nextHeader(sec)
	if err != nil {
		return h, nil, err
	}
	if h.typ != typ {
		return h, nil, r.fail(formatErr(sec, h.off, ErrOrder,
			"expected the %s record (type %d), found %s", sec, typ, describe(h.typ)))
	}
	payload, err := r.readPayload(h)
	return h, payload, err
}

// describe names a record type found where another was expected.
func describe(typ uint32) string {
	if name := recordName(typ); name[0] != 'r' {
		return name
	}
	return fmt.Sprintf("type %d", typ)
}

// Header reads the HEADER record, refusing an image this program cannot
// restore (magic, version, architecture, page size, mode).
func (r *Reader) Header() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.stage > atHeader {
		return r.hdr, nil
	}
	h, err := r.nextHeader("HEADER")
	if err != nil {
		return nil, err
	}
	if h.typ != RecHeader {
		return nil, r.fail(formatErr("HEADER", h.off, ErrMagic,
			"first record has type %d, not HEADER (1): not a ckptfs image", h.typ))
	}
	payload, err := r.readPayload(h)
	if err != nil {
		return nil, err
	}
	hdr, err := decodeHeader(h, payload)
	if err != nil {
		return nil, r.fail(err)
	}
	r.hdr, r.stage = hdr, atPids
	return hdr, nil
}

// Pids reads the PIDS record.
func (r *Reader) Pids() (*Pids, error) {
	if r.stage < atPids {
		if _, err := r.Header(); err != nil {
			return nil, err
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.stage > atPids {
		return r.pids, nil
	}
	h, payload, err := r.expect(RecPids)
	if err != nil {
		return nil, err
	}
	pids, info, err := decodePids(h, payload)
	if err != nil {
		return nil, r.fail(err)
	}
	r.pids, r.info, r.stage = pids, info, atTree
	return pids, nil
}

// Tree reads the TREE record, validated against PIDS and the header's mode.
func (r *Reader) Tree() (*Tree, error) {
	if r.stage < atTree {
		if _, err := r.Pids(); err != nil {
			return nil, err
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.stage > atTree {
		return r.tree, nil
	}
	h, payload, err := r.expect(RecTree)
	if err != nil {
		return nil, err
	}
	ctx := treeContext{pids: r.info}
	if r.hdr != nil {
		ctx.mode = r.hdr.Mode
	}
	tree, err := decodeTree(h, payload, ctx)
	if err != nil {
		return nil, r.fail(err)
	}
	r.tree, r.stage = tree, atTasks
	return tree, nil
}

// NextTask reads the TASK record of the next task in TREE order, skipping
// any per-task records left unread before it. After the last task it reads
// and verifies the TAIL (checksum, byte count, then end of stream) and
// returns io.EOF.
func (r *Reader) NextTask() (*TaskState, error) {
	if r.stage < atTasks {
		if _, err := r.Tree(); err != nil {
			return nil, err
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.stage == atEnd {
		return nil, io.EOF
	}
	if err := r.discard(r.left, recordName(r.rec.typ)); err != nil {
		return nil, err
	}
	r.left = 0
	n := len(r.tree.Tasks)
	for {
		sec := "TASK"
		if r.next == n {
			sec = "TAIL"
		}
		h, err := r.nextHeader(sec)
		if err != nil {
			return nil, err
		}
		switch {
		case isTaskRecord(h.typ) && r.next > 0:
			if err := r.discard(int64(h.len)-HeaderSize, recordName(h.typ)); err != nil {
				return nil, err
			}
			r.skipped++
		case h.typ == RecTask && r.next < n:
			payload, err := r.readPayload(h)
			if err != nil {
				return nil, err
			}
			t, err := decodeTask(h, payload, r.next, r.tree.Tasks[r.next].Pid)
			if err != nil {
				return nil, r.fail(err)
			}
			r.next++
			return t, nil
		case h.typ == RecTail && r.next == n:
			if err := r.readTail(h); err != nil {
				return nil, err
			}
			return nil, io.EOF
		case h.typ == RecTask:
			return nil, r.fail(formatErr("TASK", h.off, ErrOrder, "more TASK records than the %d tasks of TREE", n))
		case h.typ == RecTail:
			return nil, r.fail(formatErr("TAIL", h.off, ErrOrder, "TAIL after %d of the %d tasks of TREE", r.next, n))
		default:
			return nil, r.fail(formatErr(sec, h.off, ErrOrder, "expected the %s record, found %s", sec, describe(h.typ)))
		}
	}
}

// readTail reads the TAIL whose header was just read, checks it against
// the stream, and requires the end of the stream after it.
func (r *Reader) readTail(h recHeader) error {
	if h.len != tailSize {
		return r.fail(formatErr("TAIL", h.off, ErrLength, "TAIL record is %d bytes, want %d", h.len, tailSize))
	}
	crc := r.crc
	var b [tailSize - HeaderSize]byte
	if err := r.readFull(b[:], false, "TAIL", "the record"); err != nil {
		return err
	}
	if err := checkTail(h, b[:], crc); err != nil {
		return r.fail(err)
	}
	if err := r.expectEOF("TAIL"); err != nil {
		return err
	}
	r.stage = atEnd
	return nil
}

// expectEOF requires the end of the stream: an image (or a standalone
// section) is a whole file, and bytes after it mean a damaged or
// concatenated file.
func (r *Reader) expectEOF(sec string) error {
	_, err := r.br.ReadByte()
	switch {
	case err == nil:
		return r.fail(formatErr(sec, r.off, ErrTrailing, "data follows the end of the %s", sec))
	case err != io.EOF:
		return r.fail(fmt.Errorf("image: reading after %s at byte %d: %w", sec, r.off, err))
	}
	return nil
}

// Record describes a per-task record returned by NextRecord.
type Record struct {
	Type   uint32 // MinTaskRecord to MaxTaskRecord
	Size   int64  // payload bytes, read with Reader.Read
	Offset int64  // stream offset of the record header
}

// NextRecord returns the next per-task record of the current task (the one
// the last NextTask returned), skipping the unread payload of the previous
// one. It returns io.EOF when the task has no more records; NextTask then
// continues with the next task.
func (r *Reader) NextRecord() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	if r.stage == atEnd {
		return Record{}, io.EOF
	}
	if r.stage != atTasks || r.next == 0 {
		return Record{}, r.fail(formatErr("TASK", r.off, ErrOrder, "NextRecord called before the first NextTask"))
	}
	if r.pending != nil {
		return Record{}, io.EOF
	}
	if err := r.discard(r.left, recordName(r.rec.typ)); err != nil {
		return Record{}, err
	}
	r.left = 0
	h, err := r.nextHeader("TASK")
	if err != nil {
		return Record{}, err
	}
	if !isTaskRecord(h.typ) {
		// TASK, TAIL or garbage: NextTask takes it from here.
		r.pending = &h
		return Record{}, io.EOF
	}
	r.rec, r.left = h, int64(h.len)-HeaderSize
	return Record{Type: h.typ, Size: r.left, Offset: h.off}, nil
}

// Read reads payload bytes of the record NextRecord returned; it returns
// io.EOF at the end of the payload.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.br.Read(p)
	r.crc = crc32.Update(r.crc, castagnoli, p[:n])
	r.off += int64(n)
	r.left -= int64(n)
	if err != nil && r.left > 0 {
		return n, r.ioErr(err, recordName(r.rec.typ), "the record")
	}
	return n, nil
}

// ReadImage reads and validates a whole image.
func ReadImage(rd io.Reader) (*Image, error) {
	return readImage(NewReader(rd))
}

// Prologue reads what comes before the tasks: HEADER, PIDS and TREE, as an
// Image without tasks yet.
func (r *Reader) Prologue() (*Image, error) {
	hdr, err := r.Header()
	if err != nil {
		return nil, err
	}
	pids, err := r.Pids()
	if err != nil {
		return nil, err
	}
	tree, err := r.Tree()
	if err != nil {
		return nil, err
	}
	return &Image{Header: *hdr, Pids: *pids, Tree: *tree}, nil
}

func readImage(r *Reader) (*Image, error) {
	img, err := r.Prologue()
	if err != nil {
		return nil, err
	}
	img.Tasks = make([]TaskState, 0, len(img.Tree.Tasks))
	for {
		t, err := r.NextTask()
		if err == io.EOF {
			return img, nil
		}
		if err != nil {
			return nil, err
		}
		img.Tasks = append(img.Tasks, *t)
	}
}
