package image

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadAny feeds arbitrary bytes to ReadAny. It must never panic; what
// it accepts must re-encode to the very same bytes (the format has one
// encoding per model) and must be reportable.
func FuzzReadAny(f *testing.F) {
	for _, g := range goldenImages {
		f.Add(encode(f, g.img()))
	}
	for _, b := range sectionBytes(f, nestedImage()) {
		f.Add(b)
	}
	f.Add(encode(f, wideImage(30)))
	var ext bytes.Buffer
	w := NewWriter(&ext)
	img := simpleImage()
	w.WriteHeader(&img.Header)
	w.WritePids(&img.Pids)
	w.WriteTree(&img.Tree)
	for i := range img.Tasks {
		w.WriteTask(&img.Tasks[i])
		w.WriteRecord(401, 3)
		w.Write([]byte("abc"))
	}
	w.Close()
	f.Add(ext.Bytes())
	if files, _ := filepath.Glob("testdata/*.img"); len(files) > 0 {
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
			}
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		img, s, r, err := readAny(bytes.NewReader(data))
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Section == "" {
				t.Fatalf("error %v is not a *FormatError naming a section", err)
			}
			return
		}
		var again []byte
		switch s {
		case SecImage:
			var buf bytes.Buffer
			if err := WriteImage(&buf, img); err != nil {
				t.Fatalf("accepted image does not re-encode: %v", err)
			}
			again = buf.Bytes()
		case SecPids:
			again = appendPids(nil, &img.Pids)
		case SecTree:
			again = appendTree(nil, &img.Tree)
		case SecPids | SecTree:
			again = appendTree(appendPids(nil, &img.Pids), &img.Tree)
		default:
			t.Fatalf("sections %v", s)
		}
		if r.skipped == 0 && !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs from the accepted input (sections %v)", s)
		}
		if err := WriteText(io.Discard, img, s); err != nil {
			t.Fatal(err)
		}
		if err := WriteJSON(io.Discard, img, s); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzReadImage fuzzes whole images past their checksum: the fuzzer's bytes
// are the records, and a correct TAIL is appended, so mutations reach the
// validation of every record instead of dying at the CRC.
func FuzzReadImage(f *testing.F) {
	for _, g := range goldenImages {
		b := encode(f, g.img())
		f.Add(b[:len(b)-tailSize])
	}
	b := encode(f, wideImage(20))
	f.Add(b[:len(b)-tailSize])

	f.Fuzz(func(t *testing.T, data []byte) {
		full := assemble(data)
		img, err := ReadImage(bytes.NewReader(full))
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Section == "" {
				t.Fatalf("error %v is not a *FormatError naming a section", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := WriteImage(&buf, img); err != nil {
			t.Fatalf("accepted image does not re-encode: %v", err)
		}
		if r := NewReader(bytes.NewReader(full)); !bytes.Equal(buf.Bytes(), full) && countSkipped(r) == 0 {
			t.Fatalf("re-encoding differs from the accepted input")
		}
		if err := WriteText(io.Discard, img, SecImage); err != nil {
			t.Fatal(err)
		}
	})
}

// countSkipped reads an image through r and returns how many per-task
// records it skipped.
func countSkipped(r *Reader) int {
	for {
		if _, err := r.NextTask(); err != nil {
			return r.skipped
		}
	}
}
