package image

import (
	"bytes"
	"errors"
	"hash/crc32"
	"testing"
)

func pid(levels ...PidLevel) Pid { return Pid{Levels: levels} }

func lv(ns Tag, nr int32) PidLevel { return PidLevel{NS: ns, Nr: nr} }

func header(mode Mode) Header {
	return Header{
		Version: Version, Arch: ArchX86_64, PageSize: 4096, Mode: mode,
		XSaveSize: 2696, XSaveFeatures: 0x2e7, Time: 1_700_000_000_123_456_789,
		Kernel: "6.8.0-45-generic",
	}
}

// simpleImage: a container (the root is init of its namespace) with a
// thread and a child in its own session.
func simpleImage() *Image {
	return &Image{
		Header: header(ModeContainer),
		Pids: Pids{
			NS:   []PidNS{{Parent: 0}},
			Pids: []Pid{pid(lv(1, 1)), pid(lv(1, 7)), pid(lv(1, 8))},
		},
		Tree: Tree{Tasks: []Task{
			{Pid: 1, PPid: TagAncestor, TGid: 1, PGid: 1, Sid: 1},
			{Pid: 2, PPid: 1, TGid: 2, PGid: 2, Sid: 2},
			{Pid: 3, PPid: TagAncestor, TGid: 1, PGid: 1, Sid: 1}, // a thread of init
		}},
		Tasks: []TaskState{
			{Pid: 1, State: 'S', Comm: "init"},
			{Pid: 2, State: 'R', Comm: "worker"},
			{Pid: 3, State: 'S', Comm: "init-thread"},
		},
	}
}

// nestedImage: a subtree holding nested pid namespaces — namespaces 2 and 3
// are siblings under the root's namespace 1, and 4 is inside 2 — threads
// (one inside namespace 3), a dead process group leader (pid 9, no task),
// a zombie, pgids/sids inherited from above (TagRoot, TagAncestor), and
// processes sharing their parent's fs struct or descriptor table.
func nestedImage() *Image {
	return &Image{
		Header: header(ModeSubtree),
		Pids: Pids{
			NS: []PidNS{{Parent: 0}, {Parent: 1}, {Parent: 1}, {Parent: 2}},
			Pids: []Pid{
				pid(lv(1, 100)),                     // 1 root task
				pid(lv(1, 101)),                     // 2 process
				pid(lv(1, 102)),                     // 3 its thread
				pid(lv(1, 103), lv(2, 1)),           // 4 init of ns 2
				pid(lv(1, 104), lv(2, 2)),           // 5 zombie child of 4
				pid(lv(1, 105), lv(2, 3), lv(4, 1)), // 6 init of ns 4
				pid(lv(1, 106), lv(3, 1)),           // 7 init of ns 3 (sibling of 2)
				pid(lv(1, 107), lv(3, 2)),           // 8 thread of 7
				pid(lv(1, 90)),                      // 9 dead group leader
			},
		},
		Tree: Tree{Tasks: []Task{
			{Pid: 1, PPid: TagAncestor, TGid: 1, PGid: TagRoot, Sid: TagRoot},
			{Pid: 2, PPid: 1, TGid: 2, PGid: 9, Sid: TagRoot, Flags: TaskSharesFS},
			{Pid: 3, PPid: 1, TGid: 2, PGid: 9, Sid: TagRoot},
			{Pid: 4, PPid: 1, TGid: 4, PGid: 4, Sid: 4, Depth: 1},
			{Pid: 5, PPid: 4, TGid: 5, PGid: 4, Sid: 4, Depth: 1},
			{Pid: 6, PPid: 4, TGid: 6, PGid: 6, Sid: 6, Depth: 2, Flags: TaskSharesFiles | TaskSharesFS},
			{Pid: 7, PPid: 1, TGid: 7, PGid: TagAncestor, Sid: TagAncestor, Depth: 1},
			{Pid: 8, PPid: 1, TGid: 7, PGid: TagAncestor, Sid: TagAncestor, Depth: 1},
		}},
		Tasks: []TaskState{
			{Pid: 1, State: 'S', Comm: "bash"},
			{Pid: 2, State: 'S', Comm: "server"},
			{Pid: 3, State: 'R', Comm: "server-io"},
			{Pid: 4, State: 'S', Comm: "ns2-init"},
			{Pid: 5, State: 'Z', ExitCode: 0x100, Comm: "false"},
			{Pid: 6, State: 'S', Comm: "sleep"},
			{Pid: 7, State: 'S', Comm: "ns3-init"},
			{Pid: 8, State: 'D', Comm: "ns3 worker"},
		},
	}
}

// deepImage: a chain of MaxPidLevel nested namespaces, one task in each.
func deepImage() *Image {
	img := &Image{Header: header(ModeContainer)}
	img.Header.PageSize = 1 << 21
	img.Header.Kernel = ""
	for k := 0; k <= MaxPidLevel; k++ {
		img.Pids.NS = append(img.Pids.NS, PidNS{Parent: Tag(k)})
		var p Pid
		for j := 0; j <= k; j++ {
			p.Levels = append(p.Levels, lv(Tag(j+1), int32(k-j+1)))
		}
		img.Pids.Pids = append(img.Pids.Pids, p)
		tag := Tag(k + 1)
		img.Tree.Tasks = append(img.Tree.Tasks, Task{Pid: tag, PPid: Tag(k), TGid: tag, PGid: 1, Sid: 1, Depth: uint32(k)})
		img.Tasks = append(img.Tasks, TaskState{Pid: tag, State: 'S', Comm: "d"})
	}
	return img
}

// wideImage: n processes in one namespace, each a child of the previous
// one or of the root, with a thread for every tenth.
func wideImage(n int) *Image {
	img := &Image{Header: header(ModeSubtree), Pids: Pids{NS: []PidNS{{}}}}
	for i := range n {
		tag := Tag(i + 1)
		img.Pids.Pids = append(img.Pids.Pids, pid(lv(1, int32(1000+i))))
		t := Task{Pid: tag, PPid: 1, TGid: tag, PGid: TagRoot, Sid: TagRoot}
		switch {
		case i == 0:
			t.PPid = TagAncestor
		case i%10 == 9:
			t.TGid, t.PPid = tag-1, img.Tree.Tasks[i-1].PPid // thread of the previous task
		case i%3 == 0:
			t.PPid = tag - 1
		}
		img.Tree.Tasks = append(img.Tree.Tasks, t)
		img.Tasks = append(img.Tasks, TaskState{Pid: tag, State: 'S', Comm: "task"})
	}
	return img
}

func encode(t testing.TB, img *Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteImage(&b, img); err != nil {
		t.Fatalf("WriteImage: %v", err)
	}
	return b.Bytes()
}

// assemble builds an image from raw records, bypassing the Writer's
// validation, and ends it with a correct TAIL so that the record under test,
// not the checksum, is what a reader refuses.
func assemble(recs ...[]byte) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, r...)
	}
	return appendTail(b, crc32.Checksum(b, castagnoli), int64(len(b)))
}

// records encodes an image's records without validation.
func records(img *Image) [][]byte {
	recs := [][]byte{appendHeader(nil, &img.Header), appendPids(nil, &img.Pids), appendTree(nil, &img.Tree)}
	for i := range img.Tasks {
		recs = append(recs, appendTask(nil, &img.Tasks[i]))
	}
	return recs
}

// wantFormatErr checks that err is a *FormatError of kind want naming
// section sec.
func wantFormatErr(t *testing.T, err error, want error, sec string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v in %s", want, sec)
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %q (%T) is not a *FormatError", err, err)
	}
	if !errors.Is(err, want) {
		t.Errorf("error %q: want kind %v", err, want)
	}
	if fe.Section != sec {
		t.Errorf("error %q names section %q, want %q", err, fe.Section, sec)
	}
}
