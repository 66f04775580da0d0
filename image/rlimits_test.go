package image

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// sampleRLimits is a process's limits as a checkpoint records them.
func sampleRLimits() []RLimit {
	l := make([]RLimit, NumRLimits)
	for i := range l {
		l[i] = RLimit{RLimInfinity, RLimInfinity}
	}
	l[3] = RLimit{4 << 20, RLimInfinity} // RLIMIT_STACK
	l[4] = RLimit{0, 1 << 20}            // RLIMIT_CORE
	l[7] = RLimit{200, 400}              // RLIMIT_NOFILE
	l[13] = RLimit{0, 0}                 // RLIMIT_NICE
	return l
}

func TestRLimitsRecord(t *testing.T) {
	for _, l := range [][]RLimit{sampleRLimits(), {}, {{1, 2}}} {
		got, err := decodeRLimits(recHeader{typ: RecRLimits}, appendRLimits(nil, l))
		if err != nil || !reflect.DeepEqual(got, l) {
			t.Fatalf("RLIMITS round trip of %d limits: %+v, %v", len(l), got, err)
		}
	}
	if RLimitName(7) != "RLIMIT_NOFILE" || RLimitName(16) != "resource 16" {
		t.Errorf("names: %s, %s", RLimitName(7), RLimitName(16))
	}
}

// Hostile RLIMITS payloads are refused with a *FormatError naming the
// section and the offset of the field, never a panic.
func TestRLimitsRecordHostile(t *testing.T) {
	good := appendRLimits(nil, sampleRLimits())
	soft := bytes.Clone(good)
	le.PutUint64(soft[4+16*7:], 401) // RLIMIT_NOFILE soft above its hard 400
	for _, c := range []struct {
		name    string
		payload []byte
		err     error
		off     int64 // within the payload
	}{
		{"empty", nil, ErrLength, 0},
		{"count only", le.AppendUint32(nil, 1), ErrLength, 0},
		{"more resources than the kernel has", appendRLimits(nil, make([]RLimit, NumRLimits+1)), ErrTooLarge, 0},
		{"count beyond the record", le.AppendUint32(nil, 0xffffffff), ErrTooLarge, 0},
		{"count larger than the entries", append(le.AppendUint32(nil, 3), good[4:4+32]...), ErrLength, 0},
		{"soft above hard", soft, ErrInvalid, 4 + 16*7},
		{"cut inside an entry", good[:len(good)-3], ErrLength, 0},
		{"trailing bytes", append(bytes.Clone(good), 0), ErrLength, int64(len(good))},
	} {
		const base = 1000 // where the record's header sits in the stream
		_, err := decodeRLimits(recHeader{typ: RecRLimits, off: base}, c.payload)
		var fe *FormatError
		if !errors.Is(err, c.err) || !errors.As(err, &fe) || fe.Section != "RLIMITS" || fe.Offset != base+HeaderSize+c.off {
			t.Errorf("%s: %v (%+v), want %v in RLIMITS at byte %d", c.name, err, fe, c.err, base+HeaderSize+c.off)
		}
	}
}

// FuzzRLimits: whatever the payload, the decoder answers with limits that
// encode to the very same bytes or with a *FormatError naming RLIMITS.
func FuzzRLimits(f *testing.F) {
	f.Add(appendRLimits(nil, sampleRLimits()))
	f.Add(appendRLimits(nil, nil))
	f.Add(appendRLimits(nil, []RLimit{{5, 4}}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		l, err := decodeRLimits(recHeader{typ: RecRLimits}, payload)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Section != "RLIMITS" {
				t.Fatalf("error %v is not a *FormatError in RLIMITS", err)
			}
			return
		}
		if len(l) > NumRLimits {
			t.Fatalf("accepted %d limits", len(l))
		}
		for i, r := range l {
			if r.Cur > r.Max {
				t.Fatalf("accepted %s soft %d above hard %d", RLimitName(i), r.Cur, r.Max)
			}
		}
		if !bytes.Equal(appendRLimits(nil, l), payload) {
			t.Fatal("re-encoding differs from the accepted payload")
		}
	})
}
