package image

import (
	"bytes"
	"testing"
)

// deferSink is a Deferrer that records where deferred bytes go and fills
// them in afterwards, as a filesystem serving a laid-out image would.
type deferSink struct {
	buf   bytes.Buffer
	holes []hole
}

type hole struct {
	off, n int64
	addr   uint64
	tail   bool
}

func (s *deferSink) Write(p []byte) (int, error) { return s.buf.Write(p) }

func (s *deferSink) DeferPages(addr uint64, n int64) error {
	s.holes = append(s.holes, hole{off: int64(s.buf.Len()), n: n, addr: addr})
	s.buf.Write(make([]byte, n))
	return nil
}

func (s *deferSink) DeferTail(before int64) error {
	s.holes = append(s.holes, hole{off: before, n: TailSize, tail: true})
	s.buf.Write(make([]byte, TailSize))
	return nil
}

// pageBytes is what the memory at addr holds in these tests.
func pageBytes(addr uint64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(addr>>12) + byte(i*7)
	}
	return b
}

// TestWritePagesLater lays an image out with deferred pages, fills the
// holes, and checks the result is byte for byte the image written
// directly.
func TestWritePagesLater(t *testing.T) {
	img := simpleImage()
	pages := []struct {
		addr uint64
		n    int
	}{{0x10000, 4096}, {0x20000, 3 * 4096}, {0x7f0000, 4096}}
	write := func(w *Writer, later bool) {
		t.Helper()
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(w.WriteHeader(&img.Header))
		must(w.WritePids(&img.Pids))
		must(w.WriteTree(&img.Tree))
		for i := range img.Tasks {
			must(w.WriteTask(&img.Tasks[i]))
			if i != 0 {
				continue
			}
			for _, p := range pages {
				if later {
					must(w.WritePagesLater(p.addr, p.n))
				} else {
					must(w.WritePages(p.addr, pageBytes(p.addr, p.n)))
				}
			}
		}
		must(w.Close())
	}
	var direct bytes.Buffer
	write(NewWriter(&direct), false)

	sink := &deferSink{}
	w := NewWriter(sink)
	write(w, true)
	if w.Offset() != int64(direct.Len()) || int64(sink.buf.Len()) != w.Offset() {
		t.Fatalf("laid out %d bytes (offset %d), the direct image has %d", sink.buf.Len(), w.Offset(), direct.Len())
	}
	if len(sink.holes) != len(pages)+1 {
		t.Fatalf("%d holes, want %d", len(sink.holes), len(pages)+1)
	}
	out := sink.buf.Bytes()
	for _, h := range sink.holes {
		if h.tail {
			copy(out[h.off:], Tail(Checksum(0, out[:h.off]), h.off))
			continue
		}
		copy(out[h.off:], pageBytes(h.addr, int(h.n)))
	}
	if !bytes.Equal(out, direct.Bytes()) {
		t.Fatal("the filled-in layout differs from the image written directly")
	}
	if _, err := ReadImage(bytes.NewReader(out)); err != nil {
		t.Fatalf("ReadImage of the filled-in layout: %v", err)
	}
}

// TestWritePagesLaterNeedsDeferrer: a plain writer cannot defer.
func TestWritePagesLaterNeedsDeferrer(t *testing.T) {
	img := simpleImage()
	w := NewWriter(&bytes.Buffer{})
	w.WriteHeader(&img.Header)
	w.WritePids(&img.Pids)
	w.WriteTree(&img.Tree)
	w.WriteTask(&img.Tasks[0])
	if err := w.WritePagesLater(0x1000, 4096); err == nil {
		t.Fatal("WritePagesLater on a plain writer succeeded")
	}
}

// TestChecksumConcat joins checksums of parts and compares with the
// checksum of the whole.
func TestChecksumConcat(t *testing.T) {
	data := pageBytes(0x1234000, 3<<20+77)
	for _, cut := range []int{0, 1, 7, 4096, 1 << 20, len(data) - 1, len(data)} {
		a, b := data[:cut], data[cut:]
		if got, want := ChecksumConcat(Checksum(0, a), Checksum(0, b), int64(len(b))), Checksum(0, data); got != want {
			t.Errorf("cut at %d: joined %#08x, whole %#08x", cut, got, want)
		}
	}
}
