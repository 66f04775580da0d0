package image

import (
	"hash/crc32"
	"sync/atomic"
)

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
func Checksum(crc uint32, p []byte) uint32 { return checksum(crc, p) }

// ChecksumConcat returns the CRC32C of a stream made of a part whose CRC32C
// is crc1 followed by len2 bytes whose CRC32C is crc2: parts of a stream
// can be checksummed apart, in parallel, and joined in order.
//
// A CRC is linear over GF(2): appending len2 bytes to the first part
// multiplies its remainder by x^(8*len2) modulo the polynomial, and the
// initial and final inversions cancel between the two terms.
func ChecksumConcat(crc1, crc2 uint32, len2 int64) uint32 {
	return gfMul(shiftFor(len2), crc1) ^ crc2
}

// shift is x^(8n) modulo the polynomial for one n: readers join pieces of
// one size over and over.
type shift struct {
	n int64
	x uint32
}

var lastShift atomic.Pointer[shift]

func shiftFor(n int64) uint32 {
	if s := lastShift.Load(); s != nil && s.n == n {
		return s.x
	}
	x := xPow8n(n)
	lastShift.Store(&shift{n, x})
	return x
}

// Polynomials modulo the Castagnoli polynomial, in the reflected bit order
// of hash/crc32: the coefficient of x^k is bit 31-k.
const (
	gfOne = uint32(1) << 31 // x^0
	gfX   = uint32(1) << 30 // x^1
)

// gfMul returns a*b modulo the polynomial.
func gfMul(a, b uint32) uint32 {
	var p uint32
	for bit := gfOne; bit != 0; bit >>= 1 {
		if a&bit != 0 {
			p ^= b
		}
		// b *= x
		if b&1 != 0 {
			b = b>>1 ^ crc32.Castagnoli
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow8n returns x^(8n) modulo the polynomial.
func xPow8n(n int64) uint32 { return xPowN(8 * n) }

// xPowN returns x^n modulo the polynomial, by squaring.
func xPowN(n int64) uint32 {
	r, sq := gfOne, gfX
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			r = gfMul(sq, r)
		}
		sq = gfMul(sq, sq)
	}
	return r
}

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
