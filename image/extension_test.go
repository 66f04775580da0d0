package image

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// extendedImage writes the nested image with per-task records of a later
// subsystem after some TASK records: task i gets i records of type 400+i
// holding i*1000 bytes each.
func extendedImage(t *testing.T) ([]byte, *Image) {
	img := nestedImage()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteHeader(&img.Header)
	w.WritePids(&img.Pids)
	w.WriteTree(&img.Tree)
	for i := range img.Tasks {
		if err := w.WriteTask(&img.Tasks[i]); err != nil {
			t.Fatal(err)
		}
		for range i {
			if err := w.WriteRecord(uint32(400+i), int64(i*1000)); err != nil {
				t.Fatal(err)
			}
			// Two writes, to check that a payload may arrive in pieces.
			payload := bytes.Repeat([]byte{byte(i)}, i*1000)
			if _, err := w.Write(payload[:i*300]); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(payload[i*300:]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), img
}

func TestPerTaskRecordsSkipped(t *testing.T) {
	b, img := extendedImage(t)
	got, s, r, err := readAny(bytes.NewReader(b))
	if err != nil || s != SecImage {
		t.Fatalf("readAny: %v %v", err, s)
	}
	if !reflect.DeepEqual(got, img) {
		t.Fatalf("model differs")
	}
	if r.skipped != 28 { // 0+1+...+7
		t.Errorf("skipped %d per-task records, want 28", r.skipped)
	}
	// The skipped bytes are checksummed too.
	c := bytes.Clone(b)
	c[len(b)/2] ^= 0x10
	if _, err := ReadImage(bytes.NewReader(c)); err == nil {
		t.Fatal("a flip inside a skipped record went unnoticed")
	}
}

func TestNextRecord(t *testing.T) {
	b, img := extendedImage(t)
	r := NewReader(bytes.NewReader(b))
	for i := range img.Tasks {
		task, err := r.NextTask()
		if err != nil {
			t.Fatal(err)
		}
		if task.Pid != img.Tasks[i].Pid {
			t.Fatalf("task %d: pid %d", i, task.Pid)
		}
		for k := 0; ; k++ {
			rec, err := r.NextRecord()
			if err == io.EOF {
				if k != i {
					t.Fatalf("task %d: %d records, want %d", i, k, i)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.Type != uint32(400+i) || rec.Size != int64(i*1000) {
				t.Fatalf("task %d record %d: %+v", i, k, rec)
			}
			if k == 1 {
				continue // leave this one unread: NextRecord skips it
			}
			data, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, bytes.Repeat([]byte{byte(i)}, i*1000)) {
				t.Fatalf("task %d record %d: payload differs", i, k)
			}
		}
		if _, err := r.NextRecord(); err != io.EOF {
			t.Fatalf("NextRecord after the end: %v", err)
		}
	}
	if _, err := r.NextTask(); err != io.EOF {
		t.Fatalf("after the last task: %v", err)
	}
}

func TestPerTaskRecordMisuse(t *testing.T) {
	img := simpleImage()
	start := func() *Writer {
		w := NewWriter(io.Discard)
		w.WriteHeader(&img.Header)
		w.WritePids(&img.Pids)
		w.WriteTree(&img.Tree)
		return w
	}
	w := start()
	wantFormatErr(t, w.WriteRecord(7001, 10), ErrOrder, "record 7001")

	w = start()
	w.WriteTask(&img.Tasks[0])
	wantFormatErr(t, w.WriteRecord(RecTask, 10), ErrOrder, "TASK")

	w = start()
	w.WriteTask(&img.Tasks[0])
	w.WriteRecord(7001, 10)
	w.Write(make([]byte, 5))
	wantFormatErr(t, w.WriteTask(&img.Tasks[1]), ErrLength, "record 7001")

	w = start()
	w.WriteTask(&img.Tasks[0])
	w.WriteRecord(7001, 10)
	if _, err := w.Write(make([]byte, 11)); !errors.Is(err, ErrLength) {
		t.Errorf("overlong payload: %v", err)
	}

	// A record cut short in the stream.
	b, _ := extendedImage(t)
	r := NewReader(bytes.NewReader(b[:600]))
	r.NextTask()
	r.NextTask()
	if _, err := r.NextRecord(); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(r)
	wantFormatErr(t, err, ErrTruncated, "MM")
}
