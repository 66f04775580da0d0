package image

import (
	"hash/crc32"
	"math/rand"
	"testing"
)

// TestChecksum compares Checksum with hash/crc32 over lengths around the
// folding's block sizes, offsets and incoming CRCs.
func TestChecksum(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	buf := make([]byte, 3<<20)
	rng.Read(buf)
	lengths := []int{0, 1, 255, 256, 1023, 1024, 1025, 1279, 1280, 1536, 4096 + 17, 65536, 1 << 20, 3<<20 - 5}
	for range 50 {
		lengths = append(lengths, rng.Intn(200000))
	}
	for _, n := range lengths {
		for _, off := range []int{0, 1, 7, 64} {
			if off+n > len(buf) {
				continue
			}
			p := buf[off : off+n]
			for _, crc := range []uint32{0, 0xffffffff, rng.Uint32()} {
				if got, want := Checksum(crc, p), crc32.Update(crc, castagnoli, p); got != want {
					t.Fatalf("len %d off %d crc %#x: %#08x, want %#08x", n, off, crc, got, want)
				}
			}
		}
	}
}

func BenchmarkChecksum(b *testing.B) {
	p := make([]byte, 1<<20)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		Checksum(0, p)
	}
}
