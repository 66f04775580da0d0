package image

// RecRSeq is the per-thread record of a restartable-sequences registration
// (glibc registers one for every thread it starts).
const RecRSeq = 202

// RSeq is a thread's rseq registration: the area, its size, the signature
// the kernel checks at abort, and the registration flags. A thread without
// one has no RSEQ record.
type RSeq struct {
	Pointer   uint64
	Size      uint32
	Signature uint32
	Flags     uint32
}

// RSEQ payload: pointer u64, size, signature, flags, u32 zero.
func appendRSeq(b []byte, r *RSeq) []byte {
	b = le.AppendUint64(b, r.Pointer)
	b = le.AppendUint32(b, r.Size)
	b = le.AppendUint32(b, r.Signature)
	b = le.AppendUint32(b, r.Flags)
	return le.AppendUint32(b, 0)
}

func decodeRSeq(h recHeader, payload []byte) (*RSeq, error) {
	d := newDecoder(h, payload)
	r := &RSeq{Pointer: d.u64("rseq pointer"), Size: d.u32("rseq size"), Signature: d.u32("rseq signature"), Flags: d.u32("rseq flags")}
	d.u32("padding")
	if d.err == nil && (r.Pointer == 0 || r.Pointer%32 != 0 || r.Size < 32 || r.Size > 4096) {
		d.fail(ErrInvalid, "rseq area %#x of %d bytes is not a possible registration", r.Pointer, r.Size)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return r, nil
}

// WriteRSeq writes the RSEQ record of the current task.
func (w *Writer) WriteRSeq(r *RSeq) error { return w.writeSmall(RecRSeq, appendRSeq(nil, r)) }

// ReadRSeq decodes the RSEQ record rec that NextRecord returned.
func (r *Reader) ReadRSeq(rec Record) (*RSeq, error) { return readSmall(r, rec, decodeRSeq) }
