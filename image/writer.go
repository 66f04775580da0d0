package image

import (
	"bufio"
	"hash/crc32"
	"io"
	"math"
)

// writerBufSize is the Writer's buffer: large enough that the many small
// TASK records of a big tree reach the underlying writer in few calls,
// while large payload writes (page data) bypass it.
const writerBufSize = 256 << 10

type writerStage int

const (
	wantHeader writerStage = iota
	wantPids
	wantTree
	wantTasks
	closed
)

// Writer writes an image as a stream. Its methods must be called in the
// order of the format: WriteHeader, WritePids, WriteTree, then WriteTask
// once per task in TREE order (each optionally followed by per-task records
// written with WriteRecord and Write), then Close.
//
// Every record is validated exactly as a Reader would validate it before
// any of its bytes are written, so a Writer never produces an image that
// ReadImage refuses. Errors are sticky: after the first, every method
// returns it.
type Writer struct {
	bw    *bufio.Writer
	dw    Deferrer // the underlying writer, if it can defer bytes
	crc   uint32   // CRC32C of every byte written so far
	off   int64    // bytes written so far
	err   error
	stage writerStage

	mode    Mode
	version uint32 // of the header: what the per-task records may hold
	pids    *pidsInfo
	tasks   []Task // from TREE, to check TASK order
	next    int    // TASK records written

	rec  recHeader // the open per-task record, if left > 0
	left int64     // payload bytes still owed to rec

	deferred bool // some bytes were deferred: the checksum is not ours to compute

	buf []byte // scratch for encoding one record
}

// A Deferrer is an underlying writer that can hold the place of bytes it
// will produce itself later. Writing an image to one lays the image out:
// every record's size and offset are known, and so the whole image's size,
// before any page is read (see Writer.WritePagesLater). Bytes written to it
// and places deferred arrive in stream order.
type Deferrer interface {
	io.Writer
	// DeferPages holds the place of n bytes of page contents, those of
	// the current task's memory at addr.
	DeferPages(addr uint64, n int64) error
	// DeferTail holds the place of the TAIL record (TailSize bytes),
	// which follows the before bytes of the stream. Its owner makes it
	// with Tail once it has the checksum of those bytes.
	DeferTail(before int64) error
}

// NewWriter returns a Writer that writes an image to w. If w is a Deferrer,
// page contents may be deferred to it.
func NewWriter(w io.Writer) *Writer {
	dw, _ := w.(Deferrer)
	return &Writer{bw: bufio.NewWriterSize(w, writerBufSize), dw: dw}
}

// Deferrer returns the underlying writer if it can defer bytes, else nil.
func (w *Writer) Deferrer() Deferrer { return w.dw }

// deferPages holds the place of n payload bytes of the open PAGES record in
// the underlying Deferrer.
func (w *Writer) deferPages(addr uint64, n int64) error {
	if w.err != nil {
		return w.err
	}
	switch {
	case w.dw == nil:
		w.err = formatErr("PAGES", w.off, ErrInvalid, "the underlying writer cannot defer bytes")
	case n > w.left:
		w.err = formatErr(recordName(w.rec.typ), w.off, ErrLength,
			"%d deferred bytes exceed the %d left of the record's declared size", n, w.left)
	}
	if w.err != nil {
		return w.err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := w.dw.DeferPages(addr, n); err != nil {
		w.err = err
		return err
	}
	w.off += n
	w.left -= n
	w.deferred = true
	return nil
}

// Offset returns the number of bytes of the image written so far, including
// bytes still buffered. Taken between calls, it gives the byte range of
// each section (the PIDS and TREE files of the filesystem are such slices).
func (w *Writer) Offset() int64 { return w.off }

// Flush writes buffered bytes to the underlying writer.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = err
	}
	return w.err
}

// emit writes bytes of the stream, folding them into the checksum.
func (w *Writer) emit(b []byte) error {
	w.crc = crc32.Update(w.crc, castagnoli, b)
	w.off += int64(len(b))
	if _, err := w.bw.Write(b); err != nil {
		w.err = err
	}
	return w.err
}

// begin checks that a record of type typ may come next.
func (w *Writer) begin(typ uint32, want writerStage) error {
	if w.err != nil {
		return w.err
	}
	if w.stage == closed {
		return ErrClosed
	}
	if w.left > 0 {
		w.err = formatErr(recordName(w.rec.typ), w.rec.off, ErrLength,
			"%d bytes of its payload were not written before %s", w.left, recordName(typ))
		return w.err
	}
	if w.stage != want {
		w.err = formatErr(recordName(typ), w.off, ErrOrder, "%s written out of order", recordName(typ))
	}
	return w.err
}

// encoded checks the size of the record just encoded into w.buf and returns
// its header and payload for validation.
func (w *Writer) encoded() (recHeader, []byte, error) {
	h := recHeader{typ: le.Uint32(w.buf), len: uint32(len(w.buf)), off: w.off}
	if len(w.buf) > MaxRecordSize {
		w.err = formatErr(recordName(h.typ), w.off, ErrTooLarge,
			"record of %d bytes exceeds the limit %d", len(w.buf), MaxRecordSize)
	}
	return h, w.buf[HeaderSize:], w.err
}

// WriteHeader writes the HEADER record. A Version of 0 is written as the
// current Version.
func (w *Writer) WriteHeader(h *Header) error {
	if err := w.begin(RecHeader, wantHeader); err != nil {
		return err
	}
	w.buf = appendHeader(w.buf[:0], h)
	rh, payload, err := w.encoded()
	if err != nil {
		return err
	}
	hdr, err := decodeHeader(rh, payload)
	if err != nil {
		w.err = err
		return err
	}
	w.mode, w.version = hdr.Mode, hdr.Version
	w.stage = wantPids
	return w.emit(w.buf)
}

// WritePids writes the PIDS record.
func (w *Writer) WritePids(p *Pids) error {
	if err := w.begin(RecPids, wantPids); err != nil {
		return err
	}
	for i, pid := range p.Pids {
		if len(pid.Levels) == 0 {
			// Not expressible in the format (depth+1 numbers per pid).
			w.err = formatErr("PIDS", w.off, ErrInvalid, "pid %d has no numbers", i+1)
			return w.err
		}
	}
	w.buf = appendPids(w.buf[:0], p)
	rh, payload, err := w.encoded()
	if err != nil {
		return err
	}
	_, info, err := decodePids(rh, payload)
	if err != nil {
		w.err = err
		return err
	}
	w.pids = info
	w.stage = wantTree
	return w.emit(w.buf)
}

// WriteTree writes the TREE record.
func (w *Writer) WriteTree(t *Tree) error {
	if err := w.begin(RecTree, wantTree); err != nil {
		return err
	}
	w.buf = appendTree(w.buf[:0], t)
	rh, payload, err := w.encoded()
	if err != nil {
		return err
	}
	tree, err := decodeTree(rh, payload, treeContext{pids: w.pids, mode: w.mode})
	if err != nil {
		w.err = err
		return err
	}
	w.tasks = tree.Tasks
	w.stage = wantTasks
	return w.emit(w.buf)
}

// WriteTask writes the TASK record of the next task in TREE order.
func (w *Writer) WriteTask(t *TaskState) error {
	if err := w.begin(RecTask, wantTasks); err != nil {
		return err
	}
	if w.next >= len(w.tasks) {
		w.err = formatErr("TASK", w.off, ErrOrder, "TREE has %d tasks, all already written", len(w.tasks))
		return w.err
	}
	w.buf = appendTask(w.buf[:0], t)
	rh, payload, err := w.encoded()
	if err != nil {
		return err
	}
	if _, err := decodeTask(rh, payload, w.next, w.tasks[w.next].Pid); err != nil {
		w.err = err
		return err
	}
	w.next++
	return w.emit(w.buf)
}

// WriteRecord starts a per-task record of type typ (MinTaskRecord to
// MaxTaskRecord) with size bytes of payload, which the caller then writes
// with Write. It belongs to the task of the last WriteTask. This is the
// extension point of later subsystems: their payloads (page data) can be
// streamed without being held in memory.
func (w *Writer) WriteRecord(typ uint32, size int64) error {
	if err := w.begin(typ, wantTasks); err != nil {
		return err
	}
	switch {
	case !isTaskRecord(typ):
		w.err = formatErr(recordName(typ), w.off, ErrOrder,
			"type %d is not a per-task record type (%d to %d)", typ, MinTaskRecord, MaxTaskRecord)
	case w.next == 0:
		w.err = formatErr(recordName(typ), w.off, ErrOrder, "per-task record before the first TASK")
	case size < 0 || size > math.MaxUint32-HeaderSize:
		w.err = formatErr(recordName(typ), w.off, ErrTooLarge, "payload of %d bytes does not fit a record", size)
	}
	if w.err != nil {
		return w.err
	}
	w.rec = recHeader{typ: typ, len: uint32(size + HeaderSize), off: w.off}
	var hdr [HeaderSize]byte
	le.PutUint32(hdr[0:], w.rec.typ)
	le.PutUint32(hdr[4:], w.rec.len)
	w.left = size
	return w.emit(hdr[:])
}

// Write writes payload bytes of the record opened by WriteRecord; it
// refuses to write more than the size given there.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > w.left {
		w.err = formatErr(recordName(w.rec.typ), w.off, ErrLength,
			"write of %d bytes exceeds the %d left of the record's declared size", len(p), w.left)
		return 0, w.err
	}
	if err := w.emit(p); err != nil {
		return 0, err
	}
	w.left -= int64(len(p))
	return len(p), nil
}

// Close writes the TAIL and flushes the Writer's buffer. It does not close
// the underlying writer. Closing twice is harmless. If bytes were deferred,
// the TAIL is deferred too (Deferrer.DeferTail).
func (w *Writer) Close() error {
	if w.stage == closed && w.err == nil {
		return nil
	}
	if err := w.begin(RecTail, wantTasks); err != nil {
		return err
	}
	if w.next != len(w.tasks) {
		w.err = formatErr("TAIL", w.off, ErrOrder, "only %d of the %d tasks of TREE were written", w.next, len(w.tasks))
		return w.err
	}
	if w.deferred {
		// Bytes of the stream went past us: the tail is the Deferrer's.
		if err := w.Flush(); err != nil {
			return err
		}
		if err := w.dw.DeferTail(w.off); err != nil {
			w.err = err
			return err
		}
		w.off += tailSize
		w.stage = closed
		return nil
	}
	w.buf = appendTail(w.buf[:0], w.crc, w.off)
	if err := w.emit(w.buf); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	w.stage = closed
	return nil
}

// WriteImage writes a whole image held in memory.
func WriteImage(w io.Writer, img *Image) error {
	iw := NewWriter(w)
	if err := iw.WriteHeader(&img.Header); err != nil {
		return err
	}
	if err := iw.WritePids(&img.Pids); err != nil {
		return err
	}
	if err := iw.WriteTree(&img.Tree); err != nil {
		return err
	}
	for i := range img.Tasks {
		if err := iw.WriteTask(&img.Tasks[i]); err != nil {
			return err
		}
	}
	return iw.Close()
}
