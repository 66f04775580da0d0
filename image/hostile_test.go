package image

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
)

// rawRecord builds a record from u32 words.
func rawRecord(typ uint32, words ...uint32) []byte {
	b := appendRecord(nil, typ)
	for _, w := range words {
		b = le.AppendUint32(b, w)
	}
	finishRecord(b, 0)
	return b
}

// mutate encodes the nested image after f changed its model, without the
// Writer's validation.
func mutate(f func(img *Image)) []byte {
	img := nestedImage()
	f(img)
	return assemble(records(img)...)
}

func mutateSimple(f func(img *Image)) []byte {
	img := simpleImage()
	f(img)
	return assemble(records(img)...)
}

// withRecord replaces record i of the nested image.
func withRecord(i int, rec []byte) []byte {
	recs := records(nestedImage())
	recs[i] = rec
	return assemble(recs...)
}

var hostile = []struct {
	name string
	data func() []byte
	err  error
	sec  string
}{
	// HEADER
	{"empty", func() []byte { return nil }, ErrTruncated, "HEADER"},
	{"not an image", func() []byte { return []byte("#!/bin/sh\necho hello\n") }, ErrMagic, "HEADER"},
	{"magic", func() []byte {
		b := mutate(func(*Image) {})
		b[HeaderSize] = 'X'
		return b
	}, ErrMagic, "HEADER"},
	{"version 1 (TREE entries without flags)", func() []byte {
		return mutate(func(img *Image) { img.Header.Version = 1 })
	}, ErrVersion, "HEADER"},
	{"version", func() []byte {
		return mutate(func(img *Image) { img.Header.Version = Version + 1 })
	}, ErrVersion, "HEADER"},
	{"arch", func() []byte {
		return mutate(func(img *Image) { img.Header.Arch = 0x40000028 }) // arm
	}, ErrArch, "HEADER"},
	{"page size not a power of two", func() []byte {
		return mutate(func(img *Image) { img.Header.PageSize = 4097 })
	}, ErrPageSize, "HEADER"},
	{"page size too large", func() []byte {
		return mutate(func(img *Image) { img.Header.PageSize = 1 << 22 })
	}, ErrPageSize, "HEADER"},
	{"mode", func() []byte {
		return mutate(func(img *Image) { img.Header.Mode = 3 })
	}, ErrMode, "HEADER"},
	{"kernel too long", func() []byte {
		return mutate(func(img *Image) { img.Header.Kernel = string(make([]byte, 257)) })
	}, ErrTooLarge, "HEADER"},
	{"header record length below its header", func() []byte {
		return []byte{1, 0, 0, 0, 4, 0, 0, 0}
	}, ErrLength, "HEADER"},
	{"header with extra bytes", func() []byte {
		h := appendHeader(nil, &nestedImage().Header)
		h = append(h, 0, 0)
		finishRecord(h, 0)
		return withRecord(0, h)
	}, ErrLength, "HEADER"},

	// PIDS
	{"huge nr_pids", func() []byte { return withRecord(1, rawRecord(RecPids, 1, 0xffffffff, 0, 0)) }, ErrTooLarge, "PIDS"},
	{"huge nr_ns", func() []byte { return withRecord(1, rawRecord(RecPids, 1<<20, 1, 0)) }, ErrTooLarge, "PIDS"},
	{"nr_pids beyond the record", func() []byte {
		return withRecord(1, rawRecord(RecPids, 1, 1<<20, 0, 0, 0, 1, 5))
	}, ErrLength, "PIDS"},
	{"huge record length", func() []byte {
		return withRecord(1, []byte{101, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	}, ErrTooLarge, "PIDS"},
	{"record length beyond the stream", func() []byte {
		b := records(nestedImage())
		return append(append(b[0], 101, 0, 0, 0, 0, 0, 0, 3), 1, 2, 3) // claims 48 MiB
	}, ErrTruncated, "PIDS"},
	{"no namespaces", func() []byte { return withRecord(1, rawRecord(RecPids, 0, 0, 0)) }, ErrInvalid, "PIDS"},
	{"nr_vpids mismatch", func() []byte {
		return withRecord(1, rawRecord(RecPids, 2, 1, 1, 0, 1, 0, 1, 5, 0, 0)) // depth 0 but room for one more level
	}, ErrLength, "PIDS"},
	{"namespace 1 with a parent", func() []byte {
		return mutate(func(img *Image) { img.Pids.NS[0].Parent = 1 })
	}, ErrNamespace, "PIDS"},
	{"namespace parent defined later", func() []byte {
		return mutate(func(img *Image) { img.Pids.NS[1].Parent = 3 })
	}, ErrTag, "PIDS"},
	{"namespace without a parent", func() []byte {
		return mutate(func(img *Image) { img.Pids.NS[2].Parent = 0 })
	}, ErrTag, "PIDS"},
	{"pid in an undefined namespace", func() []byte {
		return mutate(func(img *Image) { img.Pids.Pids[3].Levels[1].NS = 9 })
	}, ErrTag, "PIDS"},
	{"pid level 0 outside namespace 1", func() []byte {
		return mutate(func(img *Image) { img.Pids.Pids[3].Levels[0].NS = 2 })
	}, ErrNamespace, "PIDS"},
	{"pid levels against the namespace chain", func() []byte {
		// namespace 4 is inside 2, not inside 3
		return mutate(func(img *Image) { img.Pids.Pids[5].Levels[1].NS = 3 })
	}, ErrNamespace, "PIDS"},
	{"pid depth too large", func() []byte {
		words := []uint32{1, 1, 33, 0, 33}
		for k := range 34 {
			words = append(words, 1, uint32(k+1))
		}
		return withRecord(1, rawRecord(RecPids, words...))
	}, ErrNamespace, "PIDS"},
	{"pid number zero", func() []byte {
		return mutate(func(img *Image) { img.Pids.Pids[1].Levels[0].Nr = 0 })
	}, ErrInvalid, "PIDS"},
	{"negative pid number", func() []byte {
		return mutate(func(img *Image) { img.Pids.Pids[1].Levels[0].Nr = -5 })
	}, ErrInvalid, "PIDS"},
	{"duplicate pid", func() []byte {
		return mutate(func(img *Image) { img.Pids.Pids[4].Levels[1].Nr = 1 }) // 1 in ns 2 is pid 4's
	}, ErrDuplicate, "PIDS"},
	{"pid without levels", func() []byte {
		return mutate(func(img *Image) { img.Pids.Pids[8].Levels = nil })
	}, ErrLength, "PIDS"},

	// TREE
	{"huge nr_tasks", func() []byte { return withRecord(2, rawRecord(RecTree, 0xfffffff0)) }, ErrTooLarge, "TREE"},
	{"nr_tasks beyond the record", func() []byte { return withRecord(2, rawRecord(RecTree, 1000, 1, 0, 1, 1, 1, 0, 0)) }, ErrLength, "TREE"},
	{"no tasks", func() []byte { return withRecord(2, rawRecord(RecTree, 0)) }, ErrInvalid, "TREE"},
	{"undefined pid tag", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[3].Pid = 10 })
	}, ErrTag, "TREE"},
	{"undefined pgid tag", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[4].PGid = 10 })
	}, ErrTag, "TREE"},
	{"undefined sid tag", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[4].Sid = 100 })
	}, ErrTag, "TREE"},
	{"duplicate task pid", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[5].Pid = 5; img.Tree.Tasks[5].TGid = 5 })
	}, ErrDuplicate, "TREE"},
	{"root with a parent", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[0].PPid = 2 })
	}, ErrTree, "TREE"},
	{"second task without a parent", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[3].PPid = TagAncestor })
	}, ErrTree, "TREE"},
	{"child before its parent", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[4].PPid = 6 })
	}, ErrTree, "TREE"},
	{"parent that is no task", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[4].PPid = 9 })
	}, ErrTree, "TREE"},
	{"thread of a thread", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[7].TGid = 3 })
	}, ErrTree, "TREE"},
	{"thread with another parent", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[2].PPid = 4 })
	}, ErrTree, "TREE"},
	{"thread in another namespace", func() []byte {
		return mutate(func(img *Image) {
			t, l := &img.Tree.Tasks[4], img.Tree.Tasks[1]
			t.TGid, t.PPid, t.PGid, t.Sid = l.Pid, l.PPid, l.PGid, l.Sid
		})
	}, ErrNamespace, "TREE"},
	{"thread in another process group", func() []byte {
		return mutate(func(img *Image) {
			t, l := &img.Tree.Tasks[2], img.Tree.Tasks[1]
			t.TGid, t.PPid, t.PGid, t.Sid = l.Pid, l.PPid, t.Pid, l.Sid
		})
	}, ErrTree, "TREE"},
	{"depth against the pid", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[5].Depth = 1 })
	}, ErrNamespace, "TREE"},
	{"root below its namespace", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[0].Pid = 4; img.Tree.Tasks[0].TGid = 4; img.Tree.Tasks[0].Depth = 1 })
	}, ErrNamespace, "TREE"},
	{"child outside its parent's namespace", func() []byte {
		// task 5 (pid tag 6, namespace 4 inside 2) made a child of task 6 (namespace 3)
		return mutate(func(img *Image) {
			img.Tree.Tasks[5], img.Tree.Tasks[6] = img.Tree.Tasks[6], img.Tree.Tasks[5]
			img.Tree.Tasks[6].PPid = 7
			img.Tasks[5], img.Tasks[6] = img.Tasks[6], img.Tasks[5]
		})
	}, ErrNamespace, "TREE"},
	{"root pgid in container mode", func() []byte {
		return mutateSimple(func(img *Image) { img.Tree.Tasks[1].PGid = TagRoot })
	}, ErrTag, "TREE"},
	{"unknown task flags", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[3].Flags = 1 << 7 })
	}, ErrInvalid, "TREE"},
	{"high task flags", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[3].Flags = 0x80000000 | TaskSharesFiles })
	}, ErrInvalid, "TREE"},
	{"root sharing with its parent", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[0].Flags = TaskSharesFiles })
	}, ErrTree, "TREE"},
	{"thread sharing with its parent", func() []byte {
		return mutate(func(img *Image) { img.Tree.Tasks[2].Flags = TaskSharesFS })
	}, ErrTree, "TREE"},
	{"thread of the root sharing", func() []byte {
		return mutateSimple(func(img *Image) { img.Tree.Tasks[2].Flags = TaskSharesFiles | TaskSharesFS })
	}, ErrTree, "TREE"},
	{"root sid in container mode", func() []byte {
		return mutateSimple(func(img *Image) { img.Tree.Tasks[1].Sid = TagRoot })
	}, ErrTag, "TREE"},

	// TASK
	{"task out of order", func() []byte {
		return mutate(func(img *Image) { img.Tasks[1], img.Tasks[2] = img.Tasks[2], img.Tasks[1] })
	}, ErrOrder, "TASK"},
	{"too few tasks", func() []byte {
		return mutate(func(img *Image) { img.Tasks = img.Tasks[:5] })
	}, ErrOrder, "TAIL"},
	{"too many tasks", func() []byte {
		return mutate(func(img *Image) { img.Tasks = append(img.Tasks, img.Tasks[0]) })
	}, ErrOrder, "TASK"},
	{"comm too long", func() []byte {
		return mutate(func(img *Image) { img.Tasks[3].Comm = "0123456789abcdef" })
	}, ErrTooLarge, "TASK"},
	{"comm with NUL", func() []byte {
		return mutate(func(img *Image) { img.Tasks[3].Comm = "a\x00b" })
	}, ErrInvalid, "TASK"},
	{"state", func() []byte {
		return mutate(func(img *Image) { img.Tasks[3].State = 0 })
	}, ErrInvalid, "TASK"},
	{"padding", func() []byte {
		recs := records(nestedImage())
		recs[3][HeaderSize+5] = 1
		return assemble(recs...)
	}, ErrInvalid, "TASK"},
	{"task record length", func() []byte {
		recs := records(nestedImage())
		recs[3] = append(recs[3], 0)
		finishRecord(recs[3], 0)
		return assemble(recs...)
	}, ErrLength, "TASK"},
	{"per-task record before the first task", func() []byte {
		recs := records(nestedImage())
		recs = append(recs[:3], append([][]byte{rawRecord(401, 1)}, recs[3:]...)...)
		return assemble(recs...)
	}, ErrOrder, "TASK"},
	{"unknown record type", func() []byte {
		recs := records(nestedImage())
		recs = append(recs[:4], append([][]byte{rawRecord(42, 1)}, recs[4:]...)...)
		return assemble(recs...)
	}, ErrOrder, "TASK"},

	// TAIL
	{"trailing bytes", func() []byte { return append(mutate(func(*Image) {}), 0) }, ErrTrailing, "TAIL"},
	{"image twice", func() []byte { b := mutate(func(*Image) {}); return append(b, b...) }, ErrTrailing, "TAIL"},
	{"checksum", func() []byte {
		b := mutate(func(*Image) {})
		b[len(b)-tailSize+HeaderSize+8]++
		return b
	}, ErrChecksum, "TAIL"},
	{"tail magic", func() []byte {
		b := mutate(func(*Image) {})
		b[len(b)-tailSize+HeaderSize]++
		return b
	}, ErrMagic, "TAIL"},
	{"tail byte count", func() []byte {
		b := mutate(func(*Image) {})
		b[len(b)-8]++
		return b
	}, ErrLength, "TAIL"},
	{"tail reserved", func() []byte {
		b := mutate(func(*Image) {})
		b[len(b)-12]++
		return b
	}, ErrInvalid, "TAIL"},
	{"tail length", func() []byte {
		b := mutate(func(*Image) {})
		b[len(b)-tailSize+4]++
		return b
	}, ErrLength, "TAIL"},
	{"missing tail", func() []byte {
		b := mutate(func(*Image) {})
		return b[:len(b)-tailSize]
	}, ErrTruncated, "TAIL"},
	{"a record dropped", func() []byte {
		recs := records(nestedImage())
		b := assemble(recs...)
		// drop the TASK records, keep the tail
		n := 0
		for _, r := range recs[:3] {
			n += len(r)
		}
		return append(b[:n:n], b[len(b)-tailSize:]...)
	}, ErrOrder, "TAIL"},
}

func TestHostile(t *testing.T) {
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.data()
			img, err := ReadImage(bytes.NewReader(b))
			if img != nil {
				t.Errorf("ReadImage returned an image with the error")
			}
			wantFormatErr(t, err, tc.err, tc.sec)
			t.Logf("%v", err)
			_, _, err = ReadAny(bytes.NewReader(b))
			wantFormatErr(t, err, tc.err, tc.sec)
		})
	}
}

// TestWriterRefuses checks that the Writer validates as the Reader does:
// the mutations above that are expressible in the model are refused at
// write time with the same error.
func TestWriterRefuses(t *testing.T) {
	for _, tc := range hostile {
		b := tc.data()
		want, err := ReadImage(bytes.NewReader(b))
		if want != nil || err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
	}
	img := nestedImage()
	img.Tree.Tasks[4].PGid = 10
	err := WriteImage(new(bytes.Buffer), img)
	wantFormatErr(t, err, ErrTag, "TREE")
	if got := err.Error(); got != "image: TREE at byte 386: task 4 (pid 104/2): pgid tag 10 is not defined" {
		t.Errorf("message %q", got)
	}
}

func TestStandaloneHostile(t *testing.T) {
	secs := sectionBytes(t, nestedImage())
	for _, tc := range []struct {
		name string
		data []byte
		err  error
		sec  string
	}{
		{"pids then garbage", append(bytes.Clone(secs[SecPids]), 1, 2, 3), ErrTruncated, "TREE"},
		{"pids then a task", append(bytes.Clone(secs[SecPids]), rawRecord(RecTask, 1, 'S', 0)...), ErrOrder, "TREE"},
		{"pids+tree then bytes", append(bytes.Clone(secs[SecPids|SecTree]), 0), ErrTrailing, "TREE"},
		{"tree then bytes", append(bytes.Clone(secs[SecTree]), 0), ErrTrailing, "TREE"},
		{"tree then pids", append(bytes.Clone(secs[SecTree]), secs[SecPids]...), ErrTrailing, "TREE"},
		{"tree cut", secs[SecTree][:len(secs[SecTree])-1], ErrTruncated, "TREE"},
		{"tree with a forward parent", rawRecord(RecTree, 2, 1, 0, 1, 1, 1, 0, 0, 2, 3, 2, 2, 2, 0, 0), ErrTree, "TREE"},
		{"tree of version 1 (no flags word)", rawRecord(RecTree, 2, 1, 0, 1, 1, 1, 0, 2, 1, 2, 1, 1, 0), ErrLength, "TREE"},
		{"tree with unknown flags", rawRecord(RecTree, 2, 1, 0, 1, 1, 1, 0, 0, 2, 1, 2, 1, 1, 0, 4), ErrInvalid, "TREE"},
		{"tree with a task record type", rawRecord(RecTask, 1, 'S'), ErrMagic, "HEADER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadAny(bytes.NewReader(tc.data))
			wantFormatErr(t, err, tc.err, tc.sec)
		})
	}
}

// TestTruncation cuts a valid image at every byte: each prefix must be
// refused as truncated, naming a section, never accepted or panicking.
func TestTruncation(t *testing.T) {
	for _, g := range goldenImages {
		b := encode(t, g.img())
		for n := range len(b) {
			_, err := ReadImage(bytes.NewReader(b[:n]))
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("%s cut at %d of %d: %v, want ErrTruncated", g.name, n, len(b), err)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Section == "" || fe.Offset > int64(n) {
				t.Fatalf("%s cut at %d: error %v does not say where", g.name, n, err)
			}
			if _, _, err := ReadAny(bytes.NewReader(b[:n])); err == nil {
				t.Fatalf("%s cut at %d: ReadAny accepted it", g.name, n)
			}
		}
	}
}

// TestBitFlips flips every bit of small images: the checksum alone
// catches any single flip, so every one must be refused.
func TestBitFlips(t *testing.T) {
	for _, g := range goldenImages[:2] {
		b := encode(t, g.img())
		for i := range len(b) * 8 {
			c := bytes.Clone(b)
			c[i/8] ^= 1 << (i % 8)
			_, err := ReadImage(bytes.NewReader(c))
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("%s, bit %d of byte %d flipped: %v, want a *FormatError", g.name, i%8, i/8, err)
			}
			if _, _, err := ReadAny(bytes.NewReader(c)); err == nil {
				t.Fatalf("%s, bit %d of byte %d flipped: ReadAny accepted it", g.name, i%8, i/8)
			}
		}
	}
}

// TestHugeClaimsAllocateLittle feeds records claiming the largest lengths
// and counts in short streams and checks that memory follows the bytes
// that arrive, not the claims.
func TestHugeClaimsAllocateLittle(t *testing.T) {
	inputs := [][]byte{
		withRecord(1, []byte{101, 0, 0, 0, 0, 0, 0, 4}), // PIDS of 64 MiB, 0 bytes follow
		withRecord(1, rawRecord(RecPids, MaxPidNS, MaxPids, MaxPids*MaxPidLevel)),
		withRecord(2, rawRecord(RecTree, MaxTasks)),
		append(rawRecord(RecTree, 2)[:4], 0, 0, 0, 4), // a TREE of 64 MiB, standalone
	}
	for i, in := range inputs {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range 10 {
			if _, _, err := ReadAny(bytes.NewReader(in)); err == nil {
				t.Fatalf("input %d accepted", i)
			}
		}
		runtime.ReadMemStats(&after)
		// The bound is loose (the race detector allocates more), but far
		// below the 64 MiB claimed.
		if n := after.TotalAlloc - before.TotalAlloc; n > 10*4*readChunk {
			t.Errorf("input %d: 10 reads allocated %d bytes", i, n)
		}
	}
}

// TestCheckForest: sections built in memory obey the rules a decoded image
// does, and a broken one is named by section and task, without an offset.
func TestCheckForest(t *testing.T) {
	img := nestedImage()
	if err := CheckForest(img.Header.Mode, &img.Pids, &img.Tree); err != nil {
		t.Fatalf("a valid forest refused: %v", err)
	}
	img.Tree.Tasks[4].PGid = 10
	err := CheckForest(img.Header.Mode, &img.Pids, &img.Tree)
	wantFormatErr(t, err, ErrTag, "TREE")
	if got := err.Error(); got != "image: TREE: task 4 (pid 104/2): pgid tag 10 is not defined" {
		t.Errorf("message %q", got)
	}
	img = nestedImage()
	img.Pids.Pids[3].Levels[0].Nr = img.Pids.Pids[2].Levels[0].Nr
	wantFormatErr(t, CheckForest(img.Header.Mode, &img.Pids, &img.Tree), ErrDuplicate, "PIDS")
}
