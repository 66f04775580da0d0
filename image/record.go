package image

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Record type ranges. Per-task records (memory, registers, files ... added
// by later subsystems) use types in [MinTaskRecord, MaxTaskRecord] and follow
// their task's TASK record. A Reader that does not know such a type skips it
// (see Reader.NextTask) or hands it out raw (Reader.NextRecord), so older
// readers stay usable while the format grows.
const (
	MinTaskRecord = RecTask + 1 // 104
	MaxTaskRecord = RecTail - 2 // 8999
)

// Caps on what a record may claim, checked before anything is allocated.
const (
	// MaxRecordSize caps the length of the records this package decodes
	// into memory (HEADER, PIDS, TREE, TASK). Per-task records of later
	// subsystems are streamed, never held whole, so only the u32 length
	// limits them.
	MaxRecordSize = 64 << 20
	MaxPids       = 1 << 22 // nr_pids
	MaxTasks      = 1 << 22 // nr_tasks
	MaxPidNS      = 1 << 16 // nr_ns
	MaxKernelLen  = 256     // bytes of Header.Kernel
	MaxCommLen    = 15      // TASK_COMM_LEN-1
)

// castagnoli is the CRC32C table of the TAIL checksum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var le = binary.LittleEndian

// recordName names a record type the way errors and reports print it.
func recordName(typ uint32) string {
	switch typ {
	case RecHeader:
		return "HEADER"
	case RecPids:
		return "PIDS"
	case RecTree:
		return "TREE"
	case RecTask:
		return "TASK"
	case RecTail:
		return "TAIL"
	case RecProcess:
		return "PROCESS"
	case RecCreds:
		return "CREDS"
	case RecRLimits:
		return "RLIMITS"
	case RecRegs:
		return "REGS"
	case RecMM:
		return "MM"
	case RecPages:
		return "PAGES"
	case RecRSeq:
		return "RSEQ"
	case RecThread:
		return "THREAD"
	case RecThreadAttr:
		return "THREADATTR"
	case RecFiles:
		return "FILES"
	case RecPipe:
		return "PIPE"
	case RecSocket:
		return "SOCKET"
	case RecFileData:
		return "FILEDATA"
	case RecSigHand:
		return "SIGHAND"
	case RecSigState:
		return "SIGSTATE"
	case RecITimers:
		return "ITIMERS"
	case RecSigPending:
		return "SIGPENDING"
	}
	return fmt.Sprintf("record %d", typ)
}

// isTaskRecord reports whether typ is a per-task record of a later
// subsystem, which a reader may skip.
func isTaskRecord(typ uint32) bool { return typ >= MinTaskRecord && typ <= MaxTaskRecord }

// recHeader is the 8-byte header that opens every record.
type recHeader struct {
	typ uint32
	len uint32 // header included
	off int64  // stream offset of the header
}

// appendRecord starts a record of type typ in b with a zero length; finish
// it with finishRecord once the payload is appended.
func appendRecord(b []byte, typ uint32) []byte {
	return le.AppendUint32(le.AppendUint32(b, typ), 0)
}

// finishRecord stores the length of the record that starts at b[start].
func finishRecord(b []byte, start int) {
	le.PutUint32(b[start+4:], uint32(len(b)-start))
}

// appendString appends a u16 length and the bytes of s. Callers check the
// length against the field's cap first.
func appendString(b []byte, s string) []byte {
	return append(le.AppendUint16(b, uint16(len(s))), s...)
}

// decoder reads the payload of one record, already in memory, and turns
// every problem into a *FormatError that names the section and the byte
// offset of the field. After the first error every read returns zero, so
// callers may check d.err once per entry rather than per field.
type decoder struct {
	sec  string
	buf  []byte
	pos  int
	base int64 // stream offset of buf[0]
	err  error
}

func newDecoder(h recHeader, payload []byte) decoder {
	return decoder{sec: recordName(h.typ), buf: payload, base: h.off + HeaderSize}
}

// off is the stream offset of the next unread byte.
func (d *decoder) off() int64 { return d.base + int64(d.pos) }

func (d *decoder) remaining() int { return len(d.buf) - d.pos }

// failAt records the first error at stream offset off.
func (d *decoder) failAt(off int64, err error, format string, args ...any) {
	if d.err == nil {
		d.err = formatErr(d.sec, off, err, format, args...)
	}
}

// breakAt records a broken rule (see rules.go), if any, at offset off.
func (d *decoder) breakAt(off int64, b *broken) {
	if b != nil {
		d.failAt(off, b.err, "%s", b.reason)
	}
}

func (d *decoder) fail(err error, format string, args ...any) {
	d.failAt(d.off(), err, format, args...)
}

// need checks that n more bytes remain for what.
func (d *decoder) need(n int, what string) bool {
	if d.err != nil {
		return false
	}
	if n > d.remaining() {
		d.fail(ErrLength, "%s needs %d bytes but the record has %d left", what, n, d.remaining())
		return false
	}
	return true
}

func (d *decoder) bytes(n int, what string) []byte {
	if !d.need(n, what) {
		return nil
	}
	b := d.buf[d.pos : d.pos+n]
	d.pos += n
	return b
}

func (d *decoder) u8(what string) uint8 {
	if b := d.bytes(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16(what string) uint16 {
	if b := d.bytes(2, what); b != nil {
		return le.Uint16(b)
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if b := d.bytes(4, what); b != nil {
		return le.Uint32(b)
	}
	return 0
}

func (d *decoder) u64(what string) uint64 {
	if b := d.bytes(8, what); b != nil {
		return le.Uint64(b)
	}
	return 0
}

// str reads a u16-length string of at most max bytes; the length is checked
// against max and against the record before the bytes are copied.
func (d *decoder) str(what string, max int) string {
	off := d.off()
	n := int(d.u16(what + " length"))
	if d.err != nil {
		return ""
	}
	if n > max {
		d.failAt(off, ErrTooLarge, "%s is %d bytes, at most %d allowed", what, n, max)
		return ""
	}
	return string(d.bytes(n, what))
}

// count reads a u32 count of entries of at least minSize bytes each and
// checks it against max and against what remains of the record, so that the
// caller may allocate count entries safely.
func (d *decoder) count(what string, max uint32, minSize int) int {
	off := d.off()
	n := d.u32(what)
	if d.err != nil {
		return 0
	}
	if n > max {
		d.failAt(off, ErrTooLarge, "%s %d exceeds the limit %d", what, n, max)
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(d.remaining()) {
		d.failAt(off, ErrLength, "%s %d needs at least %d bytes but the record has %d left",
			what, n, uint64(n)*uint64(minSize), d.remaining())
		return 0
	}
	return int(n)
}

// end checks that the whole payload was consumed.
func (d *decoder) end() error {
	if d.err == nil && d.remaining() != 0 {
		d.fail(ErrLength, "%d unexpected bytes at the end of the record", d.remaining())
	}
	return d.err
}
