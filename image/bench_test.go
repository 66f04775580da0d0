package image

import (
	"bytes"
	"io"
	"testing"
)

func BenchmarkWriteImage(b *testing.B) {
	img := wideImage(10000)
	size := len(encode(b, img))
	b.SetBytes(int64(size))
	for b.Loop() {
		if err := WriteImage(io.Discard, img); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadImage(b *testing.B) {
	data := encode(b, wideImage(10000))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ReadImage(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPerTaskRecords measures streaming large per-task payloads (the
// shape of page data) through Writer and Reader.
func BenchmarkPerTaskRecords(b *testing.B) {
	img := simpleImage()
	page := make([]byte, 1<<20)
	var buf bytes.Buffer
	write := func(w io.Writer) {
		iw := NewWriter(w)
		iw.WriteHeader(&img.Header)
		iw.WritePids(&img.Pids)
		iw.WriteTree(&img.Tree)
		for i := range img.Tasks {
			iw.WriteTask(&img.Tasks[i])
			for range 16 {
				iw.WriteRecord(401, int64(len(page)))
				iw.Write(page)
			}
		}
		if err := iw.Close(); err != nil {
			b.Fatal(err)
		}
	}
	write(&buf)
	data := buf.Bytes()
	b.SetBytes(int64(len(data)) * 2)
	for b.Loop() {
		write(io.Discard)
		if _, err := ReadImage(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
