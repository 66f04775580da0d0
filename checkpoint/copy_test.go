package checkpoint

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

// scribbler is testdata/scribble.c running: its two regions, and its
// output.
type scribbler struct {
	pid                  int
	main, wipe, dontfork uint64
	size                 uint64 // of main; wipe is size/8
	out                  *bufio.Reader
}

func startScribbler(t *testing.T, mib int) *scribbler {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to build testdata/scribble.c")
	}
	bin := filepath.Join(t.TempDir(), "scribble")
	if out, err := exec.Command(cc, "-O2", "-o", bin, "testdata/scribble.c").CombinedOutput(); err != nil {
		t.Fatalf("compile testdata/scribble.c: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, fmt.Sprint(mib))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &scribbler{pid: cmd.Process.Pid, size: uint64(mib) << 20, out: bufio.NewReader(stdout)}
	line, err := s.out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscanf(line, "main %v wipe %v dontfork %v", &s.main, &s.wipe, &s.dontfork); err != nil {
		t.Fatalf("scribble said %q: %v", line, err)
	}
	return s
}

// scribble makes it overwrite both regions, and waits until it has.
func (s *scribbler) scribble(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(s.pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if line, err := s.out.ReadString('\n'); err != nil || line != "scribbled\n" {
		t.Fatalf("scribble said %q (%v)", line, err)
	}
}

// check compares the pages of img's first process in [addr, addr+size)
// with the words scribble filled them with.
func checkWords(t *testing.T, pages map[uint64][]byte, addr, size, k uint64) {
	t.Helper()
	for off := uint64(0); off < size; off += 4096 {
		p := pages[addr+off]
		if p == nil {
			t.Fatalf("no page at %#x in the image", addr+off)
		}
		for j := uint64(0); j < 4096; j += 8 {
			i := (off + j) / 8
			if got := binary.LittleEndian.Uint64(p[j:]); got != i*k+7 {
				t.Fatalf("word %d at %#x: %#x, want %#x (the memory of the freeze's instant)", i, addr+off+j, got, i*k+7)
			}
		}
	}
}

// pagesOf returns the pages the image holds for its first task, by address.
func pagesOf(t *testing.T, img []byte) map[uint64][]byte {
	t.Helper()
	r := image.NewReader(bytes.NewReader(img))
	if _, err := r.Prologue(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.NextTask(); err != nil {
		t.Fatal(err)
	}
	pages := make(map[uint64][]byte)
	for {
		rec, err := r.NextRecord()
		if err == io.EOF {
			return pages
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Type != image.RecPages {
			continue
		}
		addr, err := r.ReadPagesAddr(rec, 4096)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(data); off += 4096 {
			pages[addr+uint64(off)] = data[off : off+4096]
		}
	}
}

// TestLayCopies: a process with more than smallProcess bytes of pages runs
// on as soon as it is laid out, its pages read from a copy; it overwrites
// all its memory, and the image still holds the memory of the freeze's
// instant, its MADV_WIPEONFORK and MADV_DONTFORK regions too (read while
// frozen). Closed, the
// layout leaves the process as it was: no child, no tracer.
func TestLayCopies(t *testing.T) {
	testenv.NeedRoot(t)
	s := startScribbler(t, 16)
	l := layWith(t, s.pid, Options{ReplaceExternal: true})
	res := l.Result()
	if res.Copies != 1 || res.Held != 0 || l.Released().IsZero() || res.CopiedBytes < int64(s.size/4) {
		t.Fatalf("copies %d, held %d, released %v, copied %d bytes; want one copy, the wiped region read at once",
			res.Copies, res.Held, l.Released(), res.CopiedBytes)
	}
	st, err := procfs.ReadStatus(s.pid)
	if err != nil || st.TracerPid != 0 || st.State == 't' {
		t.Fatalf("the process is not running on once laid out: %+v (%v)", st, err)
	}
	kids, err := procfs.Children(s.pid)
	if err != nil || len(kids) != 1 || !IsCopy(kids[0]) {
		t.Fatalf("children %v (%v), want its copy", kids, err)
	}
	copyPid := kids[0]
	s.scribble(t)
	pages := pagesOf(t, readLayout(t, l, 1<<20))
	checkWords(t, pages, s.main, s.size, 2654435761)
	checkWords(t, pages, s.wipe, s.size/8, 40503)
	checkWords(t, pages, s.dontfork, s.size/8, 69069)
	l.Close()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", copyPid)); err == nil {
		t.Errorf("copy %d still exists after Close", copyPid)
	}
	if kids, _ := procfs.Children(s.pid); len(kids) != 0 {
		t.Errorf("children %v after Close, want none", kids)
	}
	st, err = procfs.ReadStatus(s.pid)
	if err != nil || st.TracerPid != 0 || st.State == 't' || st.State == 'Z' {
		t.Errorf("the process after Close: %+v (%v)", st, err)
	}
	s.scribble(t) // and it runs its own code
}

// TestLayCopyKilled: a copy killed before the image is read fails the
// layout at once, naming the process, and the process runs on.
func TestLayCopyKilled(t *testing.T) {
	testenv.NeedRoot(t)
	s := startScribbler(t, 4)
	l := layWith(t, s.pid, Options{ReplaceExternal: true})
	kids, err := procfs.Children(s.pid)
	if err != nil || len(kids) != 1 {
		t.Fatalf("children %v (%v), want its copy", kids, err)
	}
	syscall.Kill(kids[0], syscall.SIGKILL)
	select {
	case <-l.Failed():
	case <-time.After(5 * time.Second):
		t.Fatal("the layout did not notice its copy's death")
	}
	_, err = l.ReadAt(make([]byte, 1<<20), 0)
	var te *TaskError
	if !errors.Is(err, ErrGone) || !errors.As(err, &te) || te.Pid != s.pid || !strings.Contains(err.Error(), "copy") {
		t.Fatalf("read after the copy's kill: %v; want ErrGone naming pid %d and its copy", err, s.pid)
	}
	l.Close()
	s.scribble(t)
}

// TestLaySmall: a process with few pages has them read while frozen: no
// copy, and the tree runs on at once.
func TestLaySmall(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startTree(t)
	l := layWith(t, pid, Options{})
	res := l.Result()
	if res.Copies != 0 || res.Held != 0 || res.CopiedBytes == 0 || l.Released().IsZero() {
		t.Fatalf("copies %d, held %d, copied %d bytes, released %v: want the pages read at once",
			res.Copies, res.Held, res.CopiedBytes, l.Released())
	}
	for _, p := range append([]int{pid}, mustChildren(t, pid)...) {
		if st, err := procfs.ReadStatus(p); err != nil || st.TracerPid != 0 {
			t.Errorf("pid %d traced once laid out (%v)", p, err)
		}
	}
	l.Thaw()
	if _, err := image.ReadImage(bytes.NewReader(readLayout(t, l, 1<<20))); err != nil {
		t.Fatalf("the image read after Thaw: %v", err)
	}
}

// TestLayCopyLimit: a tree that writes more of its memory than the
// snapshot may duplicate fails the snapshot (ENOMEM, naming the limit),
// and runs on; a small process whose pages alone are over the limit is
// held frozen instead of being read at once.
func TestLayCopyLimit(t *testing.T) {
	testenv.NeedRoot(t)
	s := startScribbler(t, 16)
	l := layWith(t, s.pid, Options{ReplaceExternal: true, CopyLimit: 8 << 20})
	if res := l.Result(); res.Copies != 1 {
		t.Fatalf("copies %d, want 1", res.Copies)
	}
	s.scribble(t)
	select {
	case <-l.Failed():
	case <-time.After(5 * time.Second):
		t.Fatalf("16 MiB written, %d bytes duplicated, and the 8 MiB limit not enforced", l.CopiedNow())
	}
	err := l.Err()
	if !errors.Is(err, ErrCopyLimit) || Errno(err) != syscall.ENOMEM || !strings.Contains(err.Error(), "limit of 8 MiB") {
		t.Errorf("the layout failed with %v (errno %v), want ErrCopyLimit naming the limit, ENOMEM", err, Errno(err))
	}
	l.Close()
	s.scribble(t)

	pid := startTree(t)
	small := layWith(t, pid, Options{CopyLimit: 4096})
	if res := small.Result(); res.Held == 0 || !small.Released().IsZero() {
		t.Errorf("over the limit: held %d, released %v; want the small processes held frozen", res.Held, small.Released())
	}
	small.Thaw()
}

// TestScanRuns: PAGEMAP_SCAN finds the very runs of pages that reading
// every page's pagemap entry finds, cut at the same places.
func TestScanRuns(t *testing.T) {
	testenv.NeedRoot(t)
	s := startScribbler(t, 8)
	syscall.Kill(s.pid, syscall.SIGSTOP)
	defer syscall.Kill(s.pid, syscall.SIGCONT)
	maps, err := procfs.ReadMaps(s.pid)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPageWriter(s.pid, os.Getpagesize())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	type run struct {
		start uint64
		n     int
	}
	var scanned, walked []run
	for _, m := range maps {
		v, err := vmaOf(&m)
		if err != nil || !holdsPages(&v) {
			continue
		}
		collect := func(out *[]run) func(*image.VMA, uint64, int) error {
			return func(_ *image.VMA, start uint64, n int) error {
				*out = append(*out, run{start, n})
				return nil
			}
		}
		if err := p.scanRuns(&v, collect(&scanned)); err != nil {
			t.Skipf("no PAGEMAP_SCAN here: %v", err)
		}
		if err := p.entryRuns(&v, collect(&walked)); err != nil {
			t.Fatal(err)
		}
	}
	if len(walked) == 0 || fmt.Sprint(scanned) != fmt.Sprint(walked) {
		t.Errorf("PAGEMAP_SCAN found %d runs, the entries %d:\n%v\n%v", len(scanned), len(walked), scanned, walked)
	}
}
