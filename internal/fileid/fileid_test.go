package fileid

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// readelfBuildID asks binutils for a file's build-id.
func readelfBuildID(t *testing.T, path string) []byte {
	t.Helper()
	out, err := exec.Command("readelf", "-n", path).Output()
	if err != nil {
		t.Skipf("readelf -n %s: %v", path, err)
	}
	m := regexp.MustCompile(`Build ID: ([0-9a-f]+)`).FindSubmatch(out)
	if m == nil {
		return nil
	}
	id, err := hex.DecodeString(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// counting is a ReaderAt that counts the bytes read from it.
type counting struct {
	r io.ReaderAt
	n int64
}

func (c *counting) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// TestBuildIDOfSystemFiles: the build-ids of an executable and of the C
// library are binutils', read in a few KiB.
func TestBuildIDOfSystemFiles(t *testing.T) {
	for _, path := range []string{"/usr/bin/sleep", "/usr/lib/x86_64-linux-gnu/libc.so.6"} {
		f, err := os.Open(path)
		if err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		defer f.Close()
		want := readelfBuildID(t, path)
		c := &counting{r: f}
		got, err := BuildID(c)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: build-id %x, %v; readelf says %x", path, got, err, want)
		}
		if c.n > 64<<10 {
			t.Errorf("%s: read %d bytes for its build-id", path, c.n)
		}
	}
}

// TestBuildIDNone: files that are no ELF file, or broken ones, have none,
// and that is no error.
func TestBuildIDNone(t *testing.T) {
	sleep, err := os.ReadFile("/usr/bin/sleep")
	if err != nil {
		t.Skip(err)
	}
	for name, data := range map[string][]byte{
		"empty":         nil,
		"text":          []byte("#!/bin/sh\necho hello\n"),
		"magic only":    []byte("\x7fELF"),
		"garbage":       append([]byte("\x7fELF"), bytes.Repeat([]byte{0xff}, 4096)...),
		"cut at 100":    sleep[:100],
		"cut at 1000":   sleep[:1000],
		"headers only":  sleep[:64],
		"zeroed middle": append(append(bytes.Clone(sleep[:64]), make([]byte, 4096)...), sleep[64+4096:]...),
	} {
		got, err := BuildID(bytes.NewReader(data))
		if got != nil || err != nil {
			t.Errorf("%s: build-id %x, %v; want none", name, got, err)
		}
	}
}

// endless serves a file's bytes, then zeros up to 1 TiB: a file whose
// headers claim sections that large.
type endless struct{ head []byte }

func (e endless) ReadAt(p []byte, off int64) (int, error) {
	if off >= 1<<40 {
		return 0, io.EOF
	}
	clear(p)
	if off < int64(len(e.head)) {
		copy(p, e.head[off:])
	}
	return len(p), nil
}

// TestBuildIDBudget: a file whose section headers claim a section-name
// table of 64 GiB costs at most the read budget, and gives no build-id.
func TestBuildIDBudget(t *testing.T) {
	sleep, err := os.ReadFile("/usr/bin/sleep")
	if err != nil {
		t.Skip(err)
	}
	b := bytes.Clone(sleep)
	le := binary.LittleEndian
	shoff, shentsize, shstrndx := le.Uint64(b[0x28:]), uint64(le.Uint16(b[0x3a:])), uint64(le.Uint16(b[0x3e:]))
	le.PutUint64(b[shoff+shstrndx*shentsize+0x20:], 64<<30) // sh_size of .shstrtab
	c := &counting{r: endless{b}}
	got, err := BuildID(c)
	if got != nil || err != nil {
		t.Errorf("build-id %x, %v; want none", got, err)
	}
	if c.n > readBudget+int64(len(sleep)) {
		t.Errorf("read %d bytes, the budget is %d", c.n, readBudget)
	}
}

// TestNotes: the build-id is found among other notes, with 4- and 8-byte
// alignment, and a note cut short ends the search.
func TestNotes(t *testing.T) {
	note := func(align int, name string, typ uint32, desc []byte) []byte {
		pad := func(b []byte) []byte {
			for len(b)%align != 0 {
				b = append(b, 0)
			}
			return b
		}
		var b []byte
		b = binary.LittleEndian.AppendUint32(b, uint32(len(name)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
		b = binary.LittleEndian.AppendUint32(b, typ)
		b = pad(append(b, name...))
		return pad(append(b, desc...))
	}
	id := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}
	for _, align := range []int{4, 8} {
		seg := append(note(align, "GNU\x00", 5, []byte{0xc0, 0, 0, 0xc0, 4, 0, 0, 0, 3}), // a property note
			note(align, "Go\x00\x00", ntGNUBuildID, []byte("go build id"))...) // another owner's type 3
		seg = append(seg, note(align, "GNU\x00", ntGNUBuildID, id)...)
		got, err := notes(bytes.NewReader(seg), uint64(len(seg)), uint64(align), binary.LittleEndian)
		if err != nil || !bytes.Equal(got, id) {
			t.Errorf("align %d: %x, %v; want %x", align, got, err, id)
		}
		cut := seg[:len(seg)-8]
		if got, _ := notes(bytes.NewReader(cut), uint64(len(cut)), uint64(align), binary.LittleEndian); got != nil {
			t.Errorf("align %d: a cut note gave %x", align, got)
		}
	}
}

// FuzzBuildID: whatever a file holds, BuildID answers without a panic,
// within its budget, and with a build-id the format can hold.
func FuzzBuildID(f *testing.F) {
	if b, err := os.ReadFile("/usr/bin/sleep"); err == nil {
		f.Add(b[:min(len(b), 8192)])
	}
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &counting{r: bytes.NewReader(data)}
		id, err := BuildID(c)
		if err != nil {
			t.Fatalf("an in-memory file gave an I/O error: %v", err)
		}
		if len(id) > 255 || c.n > readBudget+4 {
			t.Fatalf("build-id of %d bytes after reading %d", len(id), c.n)
		}
	})
}
