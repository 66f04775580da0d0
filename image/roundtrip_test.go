package image

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

var roundTrips = []struct {
	name string
	img  func() *Image
}{
	{"simple", simpleImage},
	{"nested", nestedImage},
	{"deep", deepImage},
	{"wide", func() *Image { return wideImage(1000) }},
	{"zombie exit codes", func() *Image {
		img := simpleImage()
		img.Tasks[1] = TaskState{Pid: 2, State: 'Z', ExitCode: -1, Comm: "123456789012345"}
		return img
	}},
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range roundTrips {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img()
			b := encode(t, img)
			got, err := ReadImage(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("ReadImage: %v", err)
			}
			if !reflect.DeepEqual(got, img) {
				t.Fatalf("model changed in the round trip:\n got %+v\nwant %+v", got, img)
			}
			if again := encode(t, got); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding gives different bytes")
			}
			any, s, err := ReadAny(bytes.NewReader(b))
			if err != nil || s != SecImage || !reflect.DeepEqual(any, img) {
				t.Fatalf("ReadAny: %v, sections %v", err, s)
			}
		})
	}
}

// TestSections checks that the byte ranges the Writer's Offset gives are
// standalone sections ReadAny accepts, and that the streaming Reader
// reports the same offsets.
func TestSections(t *testing.T) {
	img := nestedImage()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteHeader(&img.Header); err != nil {
		t.Fatal(err)
	}
	pidsOff := w.Offset()
	if err := w.WritePids(&img.Pids); err != nil {
		t.Fatal(err)
	}
	treeOff := w.Offset()
	if err := w.WriteTree(&img.Tree); err != nil {
		t.Fatal(err)
	}
	tasksOff := w.Offset()
	for i := range img.Tasks {
		if err := w.WriteTask(&img.Tasks[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if w.Offset() != int64(len(b)) {
		t.Fatalf("Offset %d after Close, wrote %d bytes", w.Offset(), len(b))
	}

	for _, tc := range []struct {
		name  string
		bytes []byte
		want  Sections
	}{
		{"pids", b[pidsOff:treeOff], SecPids},
		{"tree", b[treeOff:tasksOff], SecTree},
		{"pids+tree", b[pidsOff:tasksOff], SecPids | SecTree},
	} {
		got, s, err := ReadAny(bytes.NewReader(tc.bytes))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if s != tc.want {
			t.Fatalf("%s: sections %v, want %v", tc.name, s, tc.want)
		}
		if s.Has(SecPids) && !reflect.DeepEqual(got.Pids, img.Pids) {
			t.Errorf("%s: pids differ", tc.name)
		}
		if s.Has(SecTree) && !reflect.DeepEqual(got.Tree, img.Tree) {
			t.Errorf("%s: tree differs", tc.name)
		}
	}

	r := NewReader(bytes.NewReader(b))
	if _, err := r.Tree(); err != nil { // reads HEADER and PIDS on the way
		t.Fatal(err)
	}
	if r.Offset() != tasksOff {
		t.Errorf("Reader offset %d after TREE, want %d", r.Offset(), tasksOff)
	}
	if h, err := r.Header(); err != nil || h.Kernel != img.Header.Kernel {
		t.Errorf("Header after Tree: %v", err)
	}
	for range img.Tasks {
		if _, err := r.NextTask(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.NextTask(); err != io.EOF {
		t.Fatalf("after the last task: %v, want io.EOF", err)
	}
	if _, err := r.NextTask(); err != io.EOF {
		t.Fatalf("EOF is not sticky: %v", err)
	}
	if r.Offset() != int64(len(b)) {
		t.Errorf("Reader offset %d at the end, want %d", r.Offset(), len(b))
	}
}

func TestWriterDefaultsVersion(t *testing.T) {
	img := simpleImage()
	img.Header.Version = 0
	got, err := ReadImage(bytes.NewReader(encode(t, img)))
	if err != nil || got.Header.Version != Version {
		t.Fatalf("version 0 written as %v, %v; want %d", got.Header.Version, err, Version)
	}
}

func TestWriterOrder(t *testing.T) {
	img := simpleImage()
	w := NewWriter(io.Discard)
	err := w.WritePids(&img.Pids)
	wantFormatErr(t, err, ErrOrder, "PIDS")
	if err2 := w.WriteHeader(&img.Header); err2 != err {
		t.Errorf("error not sticky: %v", err2)
	}

	w = NewWriter(io.Discard)
	w.WriteHeader(&img.Header)
	w.WritePids(&img.Pids)
	w.WriteTree(&img.Tree)
	w.WriteTask(&img.Tasks[0])
	wantFormatErr(t, w.Close(), ErrOrder, "TAIL")

	w = NewWriter(io.Discard)
	w.WriteHeader(&img.Header)
	w.WritePids(&img.Pids)
	w.WriteTree(&img.Tree)
	wantFormatErr(t, w.WriteTask(&img.Tasks[1]), ErrOrder, "TASK")

	if err := WriteImage(io.Discard, &Image{}); err == nil {
		t.Error("an empty image was written")
	}
}

func TestWriterClose(t *testing.T) {
	img := simpleImage()
	w := NewWriter(io.Discard)
	w.WriteHeader(&img.Header)
	w.WritePids(&img.Pids)
	w.WriteTree(&img.Tree)
	for i := range img.Tasks {
		w.WriteTask(&img.Tasks[i])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.WriteTask(&img.Tasks[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

var errDisk = errors.New("disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return f.n, errDisk
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriterIOError(t *testing.T) {
	if err := WriteImage(&failWriter{n: 100}, nestedImage()); !errors.Is(err, errDisk) {
		t.Fatalf("got %v, want the writer's error", err)
	}
}

// errReader fails with a non-EOF error after its data.
type errReader struct{ data []byte }

func (e *errReader) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, errDisk
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	return n, nil
}

func TestReaderIOError(t *testing.T) {
	b := encode(t, nestedImage())
	_, err := ReadImage(&errReader{data: b[:100]})
	if !errors.Is(err, errDisk) {
		t.Fatalf("got %v, want the reader's error", err)
	}
}
