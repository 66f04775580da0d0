package image

import (
	"hash/crc32"

	"golang.org/x/sys/cpu"
)

// The TAIL's CRC32C of a large image costs as much CPU as a good part of
// reading it, so long inputs are folded with carry-less multiplication on
// 512-bit registers where the CPU has it, several times faster than the
// CRC32 instruction hash/crc32 uses.
//
// The input is a polynomial over GF(2) (bit order reflected, as the CRC
// reads it) and only its remainder modulo the CRC polynomial P matters.
// A 128-bit block B with 64-bit halves B0 (the earlier bits) and B1 that
// stands D bits before a later block may be replaced, in that later block,
// by B0·(x^(64+D) mod P) ⊕ B1·(x^D mod P), which has the same remainder
// and fits in 128 bits: a carry-less multiply of each half by a 32-bit
// constant. (In reflected order the product comes out one bit position
// off, so the constants are x^(64+D-1) and x^(D-1).) foldCRC32C keeps 16
// such blocks in four registers, folds them over the input 2048 bits at a
// time, then folds them all onto the last block, whose 16 bytes have the
// input's CRC: the CRC32 instruction finishes from there.
var (
	canFold = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VPCLMULQDQ
	foldK   = foldConstants()
)

//go:noescape
func foldCRC32C(crc uint32, p *byte, n int, k *[12]uint64, out *[16]byte)

// foldMin is where folding starts to pay.
const foldMin = 1024

func foldConstants() *[12]uint64 {
	pair := func(d int64) [2]uint64 {
		return [2]uint64{uint64(xPowN(64+d-1)) << 32, uint64(xPowN(d-1)) << 32}
	}
	var k [12]uint64
	for i, d := range []int64{2048, 512, 384, 256, 128} {
		p := pair(d)
		k[2*i], k[2*i+1] = p[0], p[1]
	}
	return &k // k[10], k[11]: lane 3 stays where it is
}

// checksum is Checksum, folding long inputs.
func checksum(crc uint32, p []byte) uint32 {
	if !canFold || len(p) < foldMin {
		return crc32.Update(crc, castagnoli, p)
	}
	n := len(p) &^ 255
	var last [16]byte
	foldCRC32C(crc, &p[0], n, foldK, &last)
	// last has the CRC of p[:n] with the register starting at zero:
	// as a stream of its own, starting from the inverted register.
	crc = crc32.Update(^uint32(0), castagnoli, last[:])
	return crc32.Update(crc, castagnoli, p[n:])
}
