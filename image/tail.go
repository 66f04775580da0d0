package image

import "hash/crc32"

// tailSize is the size of the TAIL record, header included.
const tailSize = HeaderSize + 24

// TailSize is the size of the TAIL record, header included.
const TailSize = tailSize

// Tail returns the TAIL record that closes a stream of before bytes whose
// CRC32C is crc: what the owner of a Deferrer puts in the place DeferTail
// held.
func Tail(crc uint32, before int64) []byte { return appendTail(nil, crc, before) }

// Checksum folds p into crc, the running CRC32C of a stream (0 for none
// yet), as the TAIL computes it.
func Checksum(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }

// TAIL payload (record type 9001), little-endian:
//
//	off  size  field
//	  0     8  TailMagic "CKPTEND\x00"
//	  8     4  CRC32C (Castagnoli) of every byte of the stream before TAIL
//	 12     4  zero
//	 16     8  number of bytes before TAIL
//
// The byte count makes a stream cut at a record boundary, or one with a
// record dropped, fail even where the CRC alone would need luck.
func appendTail(b []byte, crc uint32, before int64) []byte {
	start := len(b)
	b = appendRecord(b, RecTail)
	b = append(b, TailMagic...)
	b = le.AppendUint32(b, crc)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint64(b, uint64(before))
	finishRecord(b, start)
	return b
}

// checkTail checks a TAIL payload against the CRC and byte count the reader
// computed over the stream before it.
func checkTail(h recHeader, payload []byte, crc uint32) error {
	dec := newDecoder(h, payload)
	d := &dec
	if m := d.bytes(len(TailMagic), "tail magic"); m != nil && string(m) != TailMagic {
		d.failAt(d.base, ErrMagic, "tail magic %q, want %q", m, TailMagic)
	}
	crcOff := d.off()
	sum := d.u32("checksum")
	off := d.off()
	if zero := d.u32("reserved"); zero != 0 {
		d.failAt(off, ErrInvalid, "reserved field is %#x, want 0", zero)
	}
	off = d.off()
	if n := d.u64("byte count"); d.err == nil && n != uint64(h.off) {
		d.failAt(off, ErrLength, "the tail counts %d bytes before it, the stream had %d", n, h.off)
	}
	if d.err == nil && sum != crc {
		d.failAt(crcOff, ErrChecksum, "CRC32C %#08x, the bytes before the tail give %#08x", sum, crc)
	}
	return d.end()
}
