package image

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
)

// fileIDMM is a map with a file mapping carrying every shape of identity
// beside an anonymous one.
func fileIDMM() *MM {
	long := bytes.Repeat([]byte{0xab}, MaxBuildID)
	return &MM{Exe: "/usr/bin/app", Auxv: []uint64{6, 4096}, VMAs: []VMA{
		{Start: 0x400000, End: 0x401000, Prot: 5, Path: "/usr/bin/app", Dev: 0xfe00, Ino: 77,
			ID: &FileID{Size: 8192, MtimeSec: 1_690_000_000, MtimeNsec: 999_999_999, BuildID: []byte{1, 2, 3, 4, 5, 6, 7, 8}}},
		{Start: 0x600000, End: 0x601000, Prot: 3, Path: "/lib/old.so", Dev: 0xfe00, Ino: 78,
			ID: &FileID{Size: 0, MtimeSec: -86400}}, // before 1970: mtimes may be anything
		{Start: 0x700000, End: 0x701000, Prot: 1, Path: "/lib/long.so", Dev: 0xfe00, Ino: 79,
			ID: &FileID{Size: 1 << 40, MtimeSec: 1, BuildID: long}},
		{Start: 0x800000, End: 0x801000, Prot: 1, Path: "/lib/unknown.so", Dev: 0xfe00, Ino: 80},
		{Start: 0x900000, End: 0x902000, Prot: 3, Flags: VMAAnon},
	}}
}

func fileIDFDs() []FD {
	return []FD{
		{Num: 0, Kind: FileDevice, Path: "/dev/null", Dev: 5, Ino: 4},
		{Num: 1, Kind: FileRegular, Flags: 0o2001, Pos: 10, Path: "/var/log/x.log", Dev: 0xfe00, Ino: 1234,
			ID: &FileID{Size: 10, MtimeSec: 1_700_000_000, MtimeNsec: 1}},
		{Num: 2, Kind: FileRegular, Flags: 0o200000, Path: "/srv", Dev: 0xfe00, Ino: 2},
		{Num: 3, Kind: FilePipe, Path: "pipe:[9]", Ino: 9},
	}
}

// TestFileIDRoundTrip: the identity of mappings and descriptors survives
// a version-3 record; a version-2 record has no room for it and reads
// back without.
func TestFileIDRoundTrip(t *testing.T) {
	mm, fds := fileIDMM(), fileIDFDs()
	gotMM, err := decodeMM(recHeader{typ: RecMM}, appendMM(nil, mm, Version), Version)
	if err != nil || !reflect.DeepEqual(gotMM, mm) {
		t.Fatalf("MM round trip: %v\n got %+v\nwant %+v", err, gotMM, mm)
	}
	gotFDs, err := decodeFiles(recHeader{typ: RecFiles}, appendFiles(nil, fds, Version), Version)
	if err != nil || !reflect.DeepEqual(gotFDs, fds) {
		t.Fatalf("FILES round trip: %v\n got %+v\nwant %+v", err, gotFDs, fds)
	}

	// Version 2: the same records without the identities, byte for byte
	// what version 2 wrote.
	bare := fileIDMM()
	for i := range bare.VMAs {
		bare.VMAs[i].ID = nil
	}
	b2 := appendMM(nil, bare, 2)
	if !bytes.Equal(appendMM(nil, mm, 2), b2) || len(b2) != len(appendMM(nil, mm, Version))-
		((1+8+8+4+1+8)+(1+8+8+4+1)+(1+8+8+4+1+MaxBuildID)+1+1) {
		t.Errorf("a version-2 MM record carries more than the version-2 fields")
	}
	if got, err := decodeMM(recHeader{typ: RecMM}, b2, 2); err != nil || !reflect.DeepEqual(got, bare) {
		t.Errorf("version-2 MM: %v, %+v", err, got)
	}
	// A version-3 record read as version 2 (or the reverse) does not
	// parse: the version decides the layout.
	if _, err := decodeMM(recHeader{typ: RecMM}, appendMM(nil, mm, Version), 2); err == nil {
		t.Error("a version-3 MM record read as version 2 was accepted")
	}
	if _, err := decodeFiles(recHeader{typ: RecFiles}, appendFiles(nil, fds, 2), Version); err == nil {
		t.Error("a version-2 FILES record read as version 3 was accepted")
	}
}

// TestFileIDRefusals: what the decoder refuses in an identity, and what
// the Writer refuses to encode.
func TestFileIDRefusals(t *testing.T) {
	vma := func(mut func(b []byte) []byte, v VMA) error {
		b := appendMM(nil, &MM{VMAs: []VMA{v}}, Version)
		if mut != nil {
			b = mut(b)
		}
		_, err := decodeMM(recHeader{typ: RecMM}, b, Version)
		return err
	}
	file := VMA{Start: 0x1000, End: 0x2000, Prot: 1, Path: "/x", Dev: 1, Ino: 2,
		ID: &FileID{Size: 1, MtimeSec: 2, MtimeNsec: 3, BuildID: []byte{9, 9}}}
	// Offsets from the end of the one-VMA record: the identity is last.
	idLen := 1 + 8 + 8 + 4 + 1 + 2
	for _, c := range []struct {
		name string
		v    VMA
		mut  func([]byte) []byte
		want error
	}{
		{"marker 2", file, func(b []byte) []byte { b[len(b)-idLen] = 2; return b }, ErrInvalid},
		{"a second of nanoseconds", file, func(b []byte) []byte {
			le.PutUint32(b[len(b)-idLen+17:], 1e9)
			return b
		}, ErrInvalid},
		{"build-id cut short", file, func(b []byte) []byte { return b[:len(b)-1] }, ErrLength},
		{"build-id longer than the record", file, func(b []byte) []byte { b[len(b)-3] = 200; return b }, ErrLength},
		{"marker missing", file, func(b []byte) []byte { return b[:len(b)-idLen] }, ErrLength},
		{"anonymous mapping with an identity", VMA{Start: 0x1000, End: 0x2000, Prot: 3, Flags: VMAAnon,
			ID: &FileID{Size: 1}}, nil, ErrInvalid},
	} {
		if err := vma(c.mut, c.v); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	for _, kind := range []uint32{FileDevice, FilePipe, FileFifo, FileDeleted} {
		f := FD{Num: 3, Kind: kind, Path: "/x", ID: &FileID{Size: 1}}
		if _, err := decodeFiles(recHeader{typ: RecFiles}, appendFiles(nil, []FD{f}, Version), Version); !errors.Is(err, ErrInvalid) {
			t.Errorf("an identity on a descriptor of kind %d: %v, want ErrInvalid", kind, err)
		}
	}

	// The Writer: an identity in a version-2 image, or a build-id the
	// format cannot hold, is refused before a byte is written.
	for _, c := range []struct {
		name    string
		version uint32
		id      *FileID
		write   func(w *Writer, id *FileID) error
	}{
		{"MM in version 2", 2, &FileID{Size: 1}, func(w *Writer, id *FileID) error {
			return w.WriteMM(&MM{VMAs: []VMA{{Start: 0x1000, End: 0x2000, Path: "/x", ID: id}}})
		}},
		{"FILES in version 2", 2, &FileID{Size: 1}, func(w *Writer, id *FileID) error {
			return w.WriteFiles([]FD{{Num: 1, Kind: FileRegular, Path: "/x", ID: id}})
		}},
		{"a build-id of 256 bytes", Version, &FileID{BuildID: make([]byte, MaxBuildID+1)}, func(w *Writer, id *FileID) error {
			return w.WriteMM(&MM{VMAs: []VMA{{Start: 0x1000, End: 0x2000, Path: "/x", ID: id}}})
		}},
		{"an identity on a pipe", Version, &FileID{Size: 1}, func(w *Writer, id *FileID) error {
			return w.WriteFiles([]FD{{Num: 1, Kind: FilePipe, Path: "pipe:[1]", Ino: 1, ID: id}})
		}},
	} {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		img := simpleImage()
		img.Header.Version = c.version
		w.WriteHeader(&img.Header)
		w.WritePids(&img.Pids)
		w.WriteTree(&img.Tree)
		w.WriteTask(&img.Tasks[0])
		before := w.Offset()
		err := c.write(w, c.id)
		if !errors.Is(err, ErrInvalid) || w.Offset() != before {
			t.Errorf("%s: %v after %d bytes, want ErrInvalid and nothing written", c.name, err, w.Offset()-before)
		}
		if err2 := w.Close(); err2 != err {
			t.Errorf("%s: the error is not sticky: %v", c.name, err2)
		}
	}
}

// TestReadVersion2 reads the detailed image that the version-2 code
// wrote (testdata/detailed-v2.*, made before version 3 existed): it still
// reads, its reports are byte for byte what version 2 printed, no file
// has an identity, and the Writer given version 2 writes those very
// bytes.
func TestReadVersion2(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "detailed-v2.img"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ReadReport(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("a version-2 image: %v", err)
	}
	if rep.Image.Header.Version != 2 {
		t.Fatalf("version %d", rep.Image.Header.Version)
	}
	for i, d := range rep.Details {
		if m := d.Memory; m != nil {
			for _, v := range m.Mappings {
				if v.Identity != nil {
					t.Errorf("task %d: mapping %s has an identity", i, v.Start)
				}
			}
		}
		for _, f := range d.FDs {
			if f.Identity != nil {
				t.Errorf("task %d: fd %d has an identity", i, f.FD)
			}
		}
	}
	var txt, js bytes.Buffer
	if err := rep.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		name string
		got  []byte
	}{{"detailed-v2.txt", txt.Bytes()}, {"detailed-v2.json", js.Bytes()}} {
		want, err := os.ReadFile(filepath.Join("testdata", g.name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g.got, want) {
			t.Errorf("the report of the version-2 image differs from what version 2 printed (testdata/%s):\n%s", g.name, g.got)
		}
	}
	o := defaultSample()
	o.version = 2
	if !bytes.Equal(buildSample(t, o), b) {
		t.Error("the Writer given version 2 does not write what version 2 wrote")
	}
}

// TestDiffFileIdentity: a rebuilt binary shows as its mappings' size,
// mtime and build-id changing; against a version-2 image, as identities
// that one side lacks.
func TestDiffFileIdentity(t *testing.T) {
	o := defaultSample()
	o.rebuilt = true
	d := diffSamples(t, defaultSample(), o)
	app := findTask(t, d, 100)
	if len(app.Mappings) != 2 {
		t.Fatalf("app's mappings: %+v", app.Mappings)
	}
	for _, m := range app.Mappings {
		want(t, "rebuilt "+string(m.B.Path), [2]any{m.Change, m.Fields}, [2]any{"changed", []Change{
			{"size", "16384", "16400"},
			{"mtime", "2023-07-22T04:26:40.123456789Z", "2023-07-22T04:27:40Z"},
			{"build_id", "4f0e2a7c9b1d3e5f60718293a4b5c6d7e8f90a1b", "9a01020304050607"}}})
	}
	var b bytes.Buffer
	if err := d.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	re := `(?m)^      changed +400000-402000 +r-xp +file +/usr/bin/app +size 16384 -> 16400; mtime 2023-07-22T04:26:40.123456789Z -> 2023-07-22T04:27:40Z; build_id 4f0e2a7c9b1d3e5f60718293a4b5c6d7e8f90a1b -> 9a01020304050607$`
	if !regexp.MustCompile(re).Match(b.Bytes()) {
		t.Errorf("diff text lacks %s:\n%s", re, b.String())
	}

	old := defaultSample()
	old.version = 2
	d = diffSamples(t, old, defaultSample())
	want(t, "header", d.Header, []Change{{"version", "2", "3"}})
	app = findTask(t, d, 100)
	want(t, "code mapping", app.Mappings[0].Fields, []Change{{"identity", "-",
		"size 16384, mtime 2023-07-22T04:26:40.123456789Z, build-id 4f0e2a7c9b1d3e5f60718293a4b5c6d7e8f90a1b"}})
	want(t, "log fd", app.FDs, []FDDiff{{FD: 1, Change: "changed", Kind: "regular", Path: "/var/log/app.log",
		Fields: []Change{{"identity", "-", "size 1234, mtime 2023-11-14T22:13:20.000000005Z"}}}})
}
