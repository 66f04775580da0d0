package tests

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Limits on how `ckptfs inspect` may treat a bad input: each run must end
// within badInputTime, and within badInputDataKB of data memory
// (RLIMIT_DATA; the Go runtime then dies with "out of memory"), so a count
// read from the input is never trusted for an allocation.
const (
	badInputTime   = 5 * time.Second
	badInputDataKB = 1 << 20
)

// Record types and payload layouts used to build hostile inputs. The
// contract fixes only the 8-byte record header; these follow image/ (PIDS
// starts {nr_ns, nr_pids, nr_vpids}, TREE starts {nr_tasks} and has 28-byte
// entries {pid, ppid, tgid, pgid, sid, depth, flags}, TAIL holds a CRC32C of
// what precedes it at payload offset 8). If they change, the hostile cases
// still must fail; only the section a message names may differ.
const (
	recPids      = 101
	recTree      = 102
	recTail      = 9001
	treeEntry    = 28
	tailCRCOff   = 8 + 8  // record header + tail magic
	tailCountOff = 8 + 16 // ... + crc + reserved
)

// whereRe is how a bad image's message names the section (a record name
// such as PIDS, or "record N" for an unknown type) and the byte offset.
var whereRe = regexp.MustCompile(`([A-Z][A-Z0-9_]+|record \d+) at byte \d+`)

// badCase is one input that inspect must refuse.
type badCase struct {
	name    string
	data    []byte
	section string // a section the message must name; "" for any
	mayPass bool   // a mutation that may still be valid (e.g. a bit flip in a lone section): only no panic
	stdin   bool   // give it on standard input (inspect -)
	flip    int    // if > 0, flip bit flip-1 of byte flipOff (the copy is made when the case runs)
	flipOff int
}

// bytes returns the case's input.
func (c *badCase) bytes() []byte {
	if c.flip > 0 {
		return flip(c.data, c.flipOff, uint(c.flip-1))
	}
	return c.data
}

// TestBadInput gives `ckptfs inspect` truncated, bit-flipped and hostile
// images and sections: every one must be refused quickly, with a message
// that starts "ckptfs: " and names the section and the byte offset, and
// never with a panic or a large allocation.
func TestBadInput(t *testing.T) {
	requireEnv(t)
	img, pids, tree := sampleImage(t)
	if t.Failed() {
		t.FailNow()
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("image %d bytes (pids %d, tree %d); bit-flip seed %d", len(img), len(pids), len(tree), seed)
	rng := rand.New(rand.NewPCG(seed, 0x636b7074))

	var cases []badCase
	add := func(c badCase) { cases = append(cases, c) }

	// Truncations: every cut point of the sections; of the image, every
	// cut near its start and its record boundaries, and a sample of the
	// rest (a large image would take too long cut everywhere).
	for _, part := range []struct {
		name string
		data []byte
	}{{"image", img}, {"pids", pids}, {"tree", tree}} {
		for _, n := range cutPoints(part.data, 600) {
			add(badCase{name: fmt.Sprintf("%s cut at %d", part.name, n), data: part.data[:n], stdin: n%5 == 0})
		}
	}

	// Bit flips. The image has a checksum, so any flip is an error; a
	// lone section has none, so a flip may leave it valid.
	for range 250 {
		off, bit := rng.IntN(len(img)), rng.IntN(8)
		add(badCase{name: fmt.Sprintf("image bit %d.%d", off, bit), data: img, flipOff: off, flip: bit + 1})
	}
	for _, part := range []struct {
		name string
		data []byte
	}{{"pids", pids}, {"tree", tree}} {
		for range 100 {
			off, bit := rng.IntN(len(part.data)), uint(rng.IntN(8))
			add(badCase{name: fmt.Sprintf("%s bit %d.%d", part.name, off, bit), data: part.data, flipOff: off, flip: int(bit) + 1, mayPass: true})
		}
	}

	for _, c := range hostileCases(t, img, pids, tree) {
		add(c)
	}
	t.Logf("%d bad inputs", len(cases))

	dir := t.TempDir()
	var (
		mu       sync.Mutex
		failures int
	)
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures++
		if failures <= 25 {
			t.Errorf(format, args...)
		} else if failures == 26 {
			t.Errorf("... more failures not shown")
		}
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range jobs {
				checkBadInput(t, dir, i, &cases[i], report)
			}
		})
	}
	for i := range cases {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	// The original, untouched, still decodes: the failures above are the
	// mutations' doing.
	inspectBytes(t, "good.img", img)
}

// checkBadInput runs inspect on one bad input.
func checkBadInput(t *testing.T, dir string, i int, c *badCase, report func(string, ...any)) {
	data := c.bytes()
	arg := "-"
	var setup func(*exec.Cmd)
	if c.stdin {
		setup = func(cmd *exec.Cmd) { cmd.Stdin = bytes.NewReader(data) }
	} else {
		arg = filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(arg, data, 0o600); err != nil {
			report("%s: %v", c.name, err)
			return
		}
		defer os.Remove(arg)
	}
	// Through sh for the data limit (os/exec cannot set rlimits).
	r := run(t, badInputTime, setup, "sh", "-c", fmt.Sprintf(`ulimit -d %d && exec "$0" "$@"`, badInputDataKB),
		env.bin, "inspect", "--json", arg)
	stderr := string(r.stderr)
	switch {
	case r.timedOut:
		report("%s: inspect did not finish within %v", c.name, badInputTime)
	case strings.Contains(stderr, "out of memory") || strings.Contains(stderr, "cannot allocate memory"):
		report("%s: inspect tried to allocate more than %d MiB:\n%s", c.name, badInputDataKB>>10, truncate(stderr, 500))
	case isPanic(r.stderr):
		report("%s: inspect panicked:\n%s", c.name, truncate(stderr, 1500))
	case r.code < 0:
		report("%s: inspect was killed: %s", c.name, r)
	case r.err == nil && c.mayPass:
	case r.err == nil:
		report("%s: inspect accepted it:\n%s", c.name, truncate(string(r.stdout), 500))
	case !strings.HasPrefix(stderr, "ckptfs: "):
		report("%s: the message does not start with \"ckptfs: \": %q", c.name, truncate(stderr, 500))
	case !c.mayPass && !whereRe.MatchString(stderr):
		report("%s: the message does not say \"SECTION at byte N\": %q", c.name, truncate(stderr, 500))
	case c.section != "" && !strings.Contains(stderr, c.section):
		report("%s: the message does not name %s: %q", c.name, c.section, truncate(stderr, 500))
	}
}

// sampleImage checkpoints a pidns workload (namespaces make the PIDS
// section non-trivial) and returns its image and sections.
func sampleImage(t *testing.T) (img, pids, tree []byte) {
	t.Helper()
	w := startWorkload(t, "pidns", nil)
	f := filepath.Join(t.TempDir(), "sample.img")
	if r := ckptfs(t, "checkpoint", strconv.Itoa(w.root), "-o", f); r.err != nil {
		t.Fatalf("%s", r)
	}
	img, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(img)
	if len(recs) < 4 || recs[1].typ != recPids || recs[2].typ != recTree || recs[len(recs)-1].typ != recTail {
		t.Fatalf("the sample image's records are %v, want HEADER, PIDS, TREE, ..., TAIL", recs)
	}
	pids = img[recs[1].off : recs[1].off+recs[1].len]
	tree = img[recs[2].off : recs[2].off+recs[2].len]
	return img, pids, tree
}

// cutPoints returns the lengths to cut data to: all of them if there are at
// most n, else about n of them: the first 128, the boundaries (±1, and
// inside the record header) of the first and last records, the last 32,
// and an even sample of the rest.
func cutPoints(data []byte, n int) []int {
	if len(data) <= n {
		out := make([]int, len(data))
		for i := range out {
			out[i] = i
		}
		return out
	}
	set := map[int]bool{}
	for i := 0; i < 128; i++ {
		set[i] = true
	}
	recs := records(data)
	if len(recs) > 24 {
		recs = slices.Concat(recs[:16], recs[len(recs)-8:])
	}
	for _, r := range recs {
		for _, cut := range []int{r.off - 1, r.off + 1, r.off + 4, r.off + 7, r.off + 8, r.off + 9} {
			if cut >= 0 && cut < len(data) {
				set[cut] = true
			}
		}
	}
	for i := len(data) - 32; i < len(data); i++ {
		set[i] = true
	}
	step := len(data) / max(n-len(set), 1)
	for i := 128; i < len(data); i += max(step, 1) {
		set[i] = true
	}
	out := make([]int, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func flip(data []byte, off int, bit uint) []byte {
	out := slices.Clone(data)
	out[off] ^= 1 << bit
	return out
}

// fixTail recomputes the TAIL's checksum and byte count of an image whose
// bytes were edited in place, so that the edit is what the reader meets.
func fixTail(img []byte) []byte {
	recs := records(img)
	if len(recs) == 0 {
		return img
	}
	tl := recs[len(recs)-1]
	if tl.typ != recTail || tl.len < tailCountOff+8 {
		return img
	}
	crc := crc32.Checksum(img[:tl.off], crc32.MakeTable(crc32.Castagnoli))
	putLE32(img[tl.off+tailCRCOff:], crc)
	putLE32(img[tl.off+tailCountOff:], uint32(tl.off))
	putLE32(img[tl.off+tailCountOff+4:], uint32(uint64(tl.off)>>32))
	return img
}

// edit returns a copy of img with the u32 at record rec's payload offset
// off set to v, and the tail fixed.
func edit(img []byte, rec record, off int, v uint32) []byte {
	return setU32(img, rec.off+8+off, v)
}

// setU32 returns a copy of img with the u32 at byte off set to v, and the
// tail fixed (when the records still frame).
func setU32(img []byte, off int, v uint32) []byte {
	out := slices.Clone(img)
	putLE32(out[off:], v)
	return fixTail(out)
}

// editSection returns a copy of a lone section with the u32 at payload
// offset off set to v.
func editSection(sec []byte, off int, v uint32) []byte {
	out := slices.Clone(sec)
	putLE32(out[8+off:], v)
	return out
}

// hostileCases are hand-made inputs aimed at the decoder's checks.
func hostileCases(t *testing.T, img, pids, tree []byte) []badCase {
	recs := records(img)
	hdr, pr, tr := recs[0], recs[1], recs[2]
	nrPids := le32(pids[8+4:])
	nrTasks := le32(tree[8:])
	if nrTasks < 2 {
		t.Fatalf("the sample tree has %d tasks, want several", nrTasks)
	}
	entry := func(i, field int) int { return 4 + i*treeEntry + 4*field } // TREE payload offset
	const (
		fPid = iota
		fPPid
		fTGid
		fPGid
		fSid
		fDepth
	)
	noise := make([]byte, 1<<20)
	src := rand.NewChaCha8([32]byte{'c', 'k', 'p', 't'})
	src.Read(noise)
	concat := slices.Concat(img, img)
	trailing := slices.Concat(img, []byte("garbage"))
	noTail := slices.Clone(img[:recs[len(recs)-1].off])

	// A PIDS record that claims the cap of pids but holds a handful.
	atCap := editSection(pids, 4, 1<<22)

	cases := []badCase{
		{name: "empty", data: nil},
		{name: "one byte", data: []byte{1}},
		{name: "random 1 MiB", data: noise, stdin: true},
		{name: "zeros 4 MiB", data: make([]byte, 4<<20), stdin: true},
		{name: "ones 64 KiB", data: bytes.Repeat([]byte{0xff}, 64<<10)},
		{name: "text", data: []byte("CKPTFS but not really an image\n")},

		// Record framing.
		{name: "header length 0", data: setU32(img, hdr.off+4, 0)},
		{name: "header length 4", data: setU32(img, hdr.off+4, 4)},
		{name: "header length 0xffffffff", data: setU32(img, hdr.off+4, 0xffffffff), section: "HEADER"},
		{name: "header type 0", data: setU32(img, hdr.off, 0)},
		{name: "pids length 0xffffffff", data: setU32(img, pr.off+4, 0xffffffff), section: "PIDS"},
		{name: "pids length 7", data: setU32(img, pr.off+4, 7)},
		{name: "pids length +4", data: setU32(img, pr.off+4, uint32(pr.len+4))},
		{name: "tree length 0x7fffffff", data: setU32(img, tr.off+4, 0x7fffffff), section: "TREE"},
		{name: "pids and tree swapped", data: fixTail(slices.Concat(img[:pr.off], tree, pids, img[tr.off+tr.len:]))},
		{name: "no tail", data: noTail},
		{name: "two images", data: concat},
		{name: "trailing bytes", data: trailing},

		// PIDS counts.
		{name: "nr_pids 0xffffffff", data: edit(img, pr, 4, 0xffffffff), section: "PIDS"},
		{name: "nr_pids at the cap", data: edit(img, pr, 4, 1<<22), section: "PIDS"},
		{name: "nr_pids 0", data: edit(img, pr, 4, 0), section: "PIDS"},
		{name: "nr_ns 0xffffffff", data: edit(img, pr, 0, 0xffffffff), section: "PIDS"},
		{name: "nr_vpids 0xffffffff", data: edit(img, pr, 8, 0xffffffff), section: "PIDS"},
		{name: "lone pids, nr_pids 0xffffffff", data: editSection(pids, 4, 0xffffffff), section: "PIDS"},
		{name: "lone pids, nr_pids at the cap", data: atCap, section: "PIDS"},
		{name: "namespace 1 with a parent", data: edit(img, pr, 12, 5), section: "PIDS"},

		// TREE counts and tags.
		{name: "nr_tasks 0xffffffff", data: edit(img, tr, 0, 0xffffffff), section: "TREE"},
		{name: "nr_tasks 0", data: edit(img, tr, 0, 0), section: "TREE"},
		{name: "lone tree, nr_tasks 0xffffffff", data: editSection(tree, 0, 0xffffffff), section: "TREE"},
		{name: "lone tree, nr_tasks 1<<22", data: editSection(tree, 0, 1<<22), section: "TREE"},
		{name: "root pid tag undefined", data: edit(img, tr, entry(0, fPid), nrPids+7), section: "TREE"},
		{name: "root pid tag 0", data: edit(img, tr, entry(0, fPid), 0), section: "TREE"},
		{name: "task 1 pgid tag undefined", data: edit(img, tr, entry(1, fPGid), nrPids+1), section: "TREE"},
		{name: "task 1 sid tag undefined", data: edit(img, tr, entry(1, fSid), 0x7fffffff), section: "TREE"},
		{name: "task 1 ppid tag undefined", data: edit(img, tr, entry(1, fPPid), nrPids+100), section: "TREE"},
		{name: "task 1 tgid tag undefined", data: edit(img, tr, entry(1, fTGid), nrPids+3), section: "TREE"},
		{name: "task 1 its own parent", data: edit(img, tr, entry(1, fPPid), le32(tree[8+entry(1, fPid):])), section: "TREE"},
		{name: "task 1 depth 33", data: edit(img, tr, entry(1, fDepth), 33), section: "TREE"},
		{name: "task 1 depth 0xffffffff", data: edit(img, tr, entry(1, fDepth), 0xffffffff), section: "TREE"},
		{name: "root with a parent", data: edit(img, tr, entry(0, fPPid), le32(tree[8+entry(1, fPid):])), section: "TREE"},
		{name: "lone tree, pid tag 0", data: editSection(tree, entry(0, fPid), 0), section: "TREE"},
		{name: "lone tree, task 1 parent undefined", data: editSection(tree, entry(1, fPPid), 0x7ffffff0), section: "TREE"},
	}
	return cases
}
