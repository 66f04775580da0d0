package image

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestThreadAttrRecord(t *testing.T) {
	for _, a := range []ThreadAttr{
		{},
		{Policy: SchedBatch, Nice: 5, PDeathSig: 28},
		{Policy: SchedIdle, ResetOnFork: true, Nice: 19},
		{Policy: SchedFIFO, Priority: 3, Nice: -20, PDeathSig: 64},
		{Policy: SchedRR, Priority: 99, PDeathSig: 9},
	} {
		got, err := decodeThreadAttr(recHeader{typ: RecThreadAttr}, appendThreadAttr(nil, &a))
		if err != nil || *got != a {
			t.Errorf("THREADATTR round trip of %+v: %+v, %v", a, got, err)
		}
	}
}

// Hostile THREADATTR payloads are refused with a *FormatError naming the
// section and the offset of the field, never a panic.
func TestThreadAttrRecordHostile(t *testing.T) {
	raw := func(words ...uint32) []byte {
		var b []byte
		for _, w := range words {
			b = le.AppendUint32(b, w)
		}
		return b
	}
	for _, c := range []struct {
		name    string
		payload []byte
		err     error
		off     int64 // within the payload
	}{
		{"empty", nil, ErrLength, 0},
		{"short", raw(0, 0, 0, 0), ErrLength, 16},
		{"trailing bytes", raw(0, 0, 0, 0, 0, 0), ErrLength, 20},
		{"SCHED_DEADLINE", raw(6, 0, 0, 0, 0), ErrInvalid, 0},
		{"SCHED_EXT", raw(7, 0, 0, 0, 0), ErrInvalid, 0},
		{"policy 4", raw(4, 0, 0, 0, 0), ErrInvalid, 0},
		{"policy with the reset-on-fork bit", raw(0x40000003, 0, 0, 0, 0), ErrInvalid, 0},
		{"unknown flag", raw(SchedBatch, 2, 0, 0, 0), ErrInvalid, 4},
		{"SCHED_FIFO priority 0", raw(SchedFIFO, 0, 0, 0, 0), ErrInvalid, 8},
		{"SCHED_RR priority 100", raw(SchedRR, 0, 100, 0, 0), ErrInvalid, 8},
		{"SCHED_OTHER with a priority", raw(SchedOther, 0, 1, 0, 0), ErrInvalid, 8},
		{"nice 20", raw(SchedOther, 0, 0, 20, 0), ErrInvalid, 12},
		{"nice -21", raw(SchedIdle, 0, 0, 0xffffffeb, 0), ErrInvalid, 12},
		{"signal 65", raw(SchedOther, 0, 0, 0, 65), ErrInvalid, 16},
		{"signal 2^32-1", raw(SchedOther, 0, 0, 0, 0xffffffff), ErrInvalid, 16},
	} {
		const base = 2000
		_, err := decodeThreadAttr(recHeader{typ: RecThreadAttr, off: base}, c.payload)
		var fe *FormatError
		if !errors.Is(err, c.err) || !errors.As(err, &fe) || fe.Section != "THREADATTR" || fe.Offset != base+HeaderSize+c.off {
			t.Errorf("%s: %v (%+v), want %v in THREADATTR at byte %d", c.name, err, fe, c.err, base+HeaderSize+c.off)
		}
	}
}

// The new records travel in a whole image after a TASK record: a reader
// that does not ask for them skips them (older readers too), one that does
// gets them back, and a bad one inside an otherwise sound image is refused
// at its offset in the stream.
func TestAttrRecordsInImage(t *testing.T) {
	img := simpleImage()
	attr := ThreadAttr{Policy: SchedFIFO, Priority: 3, PDeathSig: 23}
	encodeWith := func(attrPayload []byte) []byte {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.WriteHeader(&img.Header)
		w.WritePids(&img.Pids)
		w.WriteTree(&img.Tree)
		for i := range img.Tasks {
			w.WriteTask(&img.Tasks[i])
			w.WriteRLimits(sampleRLimits())
			w.WriteRecord(RecThreadAttr, int64(len(attrPayload)))
			w.Write(attrPayload)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	good := encodeWith(appendThreadAttr(nil, &attr))
	if _, err := ReadImage(bytes.NewReader(good)); err != nil {
		t.Fatalf("a reader that skips the records: %v", err)
	}
	r := NewReader(bytes.NewReader(good))
	if _, err := r.NextTask(); err != nil {
		t.Fatal(err)
	}
	rec, err := r.NextRecord()
	if err != nil || rec.Type != RecRLimits {
		t.Fatalf("first record %+v, %v", rec, err)
	}
	if l, err := r.ReadRLimits(rec); err != nil || len(l) != NumRLimits || l[7] != (RLimit{200, 400}) {
		t.Fatalf("RLIMITS %+v, %v", l, err)
	}
	if rec, err = r.NextRecord(); err != nil || rec.Type != RecThreadAttr {
		t.Fatalf("second record %+v, %v", rec, err)
	}
	if a, err := r.ReadThreadAttr(rec); err != nil || *a != attr {
		t.Fatalf("THREADATTR %+v, %v", a, err)
	}
	if _, err := r.NextRecord(); err != io.EOF {
		t.Fatalf("after the records: %v", err)
	}

	bad := encodeWith(le.AppendUint32(appendThreadAttr(nil, &attr)[:16], 99)) // signal 99
	r = NewReader(bytes.NewReader(bad))
	r.NextTask()
	r.NextRecord()
	rec, _ = r.NextRecord()
	_, err = r.ReadThreadAttr(rec)
	var fe *FormatError
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Section != "THREADATTR" || fe.Offset != rec.Offset+HeaderSize+16 {
		t.Fatalf("signal 99 in a stream: %v, want ErrInvalid in THREADATTR at byte %d", err, rec.Offset+HeaderSize+16)
	}
	if _, err := r.NextTask(); !errors.Is(err, ErrInvalid) {
		t.Errorf("the reader goes on after a bad record: %v", err)
	}
}

// FuzzThreadAttr: whatever the payload, the decoder answers with
// attributes in range that encode to the very same bytes, or with a
// *FormatError naming THREADATTR.
func FuzzThreadAttr(f *testing.F) {
	for _, a := range []ThreadAttr{{}, {Policy: SchedIdle, ResetOnFork: true, Nice: 7, PDeathSig: 28},
		{Policy: SchedFIFO, Priority: 3, PDeathSig: 23}} {
		f.Add(appendThreadAttr(nil, &a))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		a, err := decodeThreadAttr(recHeader{typ: RecThreadAttr}, payload)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Section != "THREADATTR" {
				t.Fatalf("error %v is not a *FormatError in THREADATTR", err)
			}
			return
		}
		rt := a.Policy == SchedFIFO || a.Policy == SchedRR
		if a.Nice < -20 || a.Nice > 19 || a.PDeathSig > MaxSignals || rt != (a.Priority != 0) || a.Priority > MaxRTPriority {
			t.Fatalf("accepted %+v", a)
		}
		if !bytes.Equal(appendThreadAttr(nil, a), payload) {
			t.Fatal("re-encoding differs from the accepted payload")
		}
	})
}
