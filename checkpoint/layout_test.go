package checkpoint

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

// lay lays out the subtree of pid, kept frozen until Thaw (Options.Hold),
// closing the layout at cleanup.
func lay(t *testing.T, pid int) *Layout {
	t.Helper()
	return layWith(t, pid, Options{Hold: true})
}

// layWith lays out the subtree of pid with opt, closing the layout at
// cleanup.
func layWith(t *testing.T, pid int, opt Options) *Layout {
	t.Helper()
	l, err := Lay(context.Background(), pid, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// readLayout reads the whole layout in chunks of n bytes, front to back.
func readLayout(t *testing.T, l *Layout, n int) []byte {
	t.Helper()
	out := make([]byte, 0, l.Size())
	buf := make([]byte, n)
	for off := int64(0); ; {
		k, err := l.ReadAt(buf, off)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("ReadAt(%d bytes at %d): %v", n, off, err)
		}
		l.Sum(l.PieceOf(buf[:k], off))
		out = append(out, buf[:k]...)
		off += int64(k)
	}
	if int64(len(out)) != l.Size() {
		t.Fatalf("read %d bytes, the layout has %d", len(out), l.Size())
	}
	return out
}

// recordBounds returns the offsets at which the records of an image start.
func recordBounds(t *testing.T, img []byte) []int {
	t.Helper()
	var at []int
	for off := 0; off < len(img); {
		if len(img)-off < image.HeaderSize {
			t.Fatalf("a record header cut at %d", off)
		}
		at = append(at, off)
		off += int(binary.LittleEndian.Uint32(img[off+4:]))
	}
	return at
}

// TestLayMatchesWrite: a laid-out image copied out (WriteTo) is a valid image
// with the same records as the one Write streams, byte for byte apart from
// the header's time and the tail's checksum, and the tree stays frozen
// until Close. (The tree is stopped by SIGSTOP first, so that nothing in
// it changes between the two checkpoints, and pinned to one CPU: the
// system calls capture injects return to user space, where the kernel
// writes the CPU number into the rseq area of the thread.)
func TestLayMatchesWrite(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startTree(t)
	var cpu0 unix.CPUSet
	cpu0.Set(0)
	// A task let go from a freeze goes back to its group-stop when it next
	// runs: the second checkpoint must find every one there again.
	groupStopped := func() {
		for _, p := range append([]int{pid}, mustChildren(t, pid)...) {
			for i := 0; i < 100; i++ {
				if st, _ := procfs.ReadStatus(p); st != nil && st.State == 'T' {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	for _, p := range append([]int{pid}, mustChildren(t, pid)...) {
		if err := unix.SchedSetaffinity(p, &cpu0); err != nil {
			t.Fatal(err)
		}
		syscall.Kill(p, syscall.SIGSTOP)
	}
	groupStopped()
	var streamed bytes.Buffer
	if _, err := Write(context.Background(), &streamed, pid, Options{}); err != nil {
		t.Fatal(err)
	}
	groupStopped()
	l := lay(t, pid)
	res := l.Result()
	if res.Size != l.Size() || res.Tasks != 3 || res.Frozen <= 0 {
		t.Errorf("result %+v, size %d", res, l.Size())
	}
	var copied bytes.Buffer
	if n, err := l.WriteTo(&copied); err != nil || n != l.Size() || !l.Complete() {
		t.Fatalf("WriteTo: %d bytes of %d, %v; complete %v", n, l.Size(), err, l.Complete())
	}
	got := copied.Bytes()
	if _, err := image.ReadImage(bytes.NewReader(got)); err != nil {
		t.Fatalf("the laid-out image does not decode: %v", err)
	}
	want := streamed.Bytes()
	if len(got) != len(want) {
		t.Fatalf("laid out %d bytes, Write wrote %d", len(got), len(want))
	}
	b := recordBounds(t, got)
	for i, at := range b[1 : len(b)-1] {
		end := b[i+2]
		if !bytes.Equal(got[at:end], want[at:end]) {
			d := at
			for got[d] == want[d] {
				d++
			}
			t.Errorf("record %d (type %d at %d) differs from Write's at +%d: addr %#x", i+1, binary.LittleEndian.Uint32(got[at:]), at, d-at, binary.LittleEndian.Uint64(got[at+8:]))
		}
	}
	if !bytes.Equal(got[res.Pids.Off:res.Pids.Off+res.Pids.Len], want[res.Pids.Off:res.Pids.Off+res.Pids.Len]) {
		t.Error("the PIDS section is not where the result says")
	}
	for _, p := range append([]int{pid}, mustChildren(t, pid)...) {
		if st, _ := procfs.ReadStatus(p); st == nil || st.TracerPid == 0 {
			t.Errorf("pid %d is not frozen while its layout lives", p)
		}
	}
	l.Close()
	for _, p := range append([]int{pid}, mustChildren(t, pid)...) {
		st, err := procfs.ReadStatus(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.TracerPid != 0 || st.State == 't' {
			t.Errorf("pid %d left state %c tracer %d after Close", p, st.State, st.TracerPid)
		}
	}
	if _, err := l.ReadAt(make([]byte, 10), 0); err == nil {
		t.Error("a read after Close succeeded")
	}
}

// TestLayRandomAccess reads one layout in several orders: the tail first
// (its checksum hashed on demand), random ranges, small chunks. Every
// reader gets the same bytes.
func TestLayRandomAccess(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startTree(t)
	l := lay(t, pid)
	size := l.Size()

	tail := make([]byte, image.TailSize+100)
	n, err := l.ReadAt(tail, size-int64(len(tail)))
	if err != nil || n != len(tail) {
		t.Fatalf("read the tail first: %d, %v", n, err)
	}
	whole := readLayout(t, l, 4096+7)
	if !bytes.Equal(whole[size-int64(len(tail)):], tail) {
		t.Error("the tail read first differs from the one read last")
	}
	if _, err := image.ReadImage(bytes.NewReader(whole)); err != nil {
		t.Fatalf("decode: %v", err)
	}
	rng := rand.New(rand.NewSource(1))
	for range 200 {
		off := rng.Int63n(size)
		buf := make([]byte, rng.Intn(3<<20)+1)
		n, err := l.ReadAt(buf, off)
		if err != nil {
			t.Fatalf("ReadAt(%d, %d): %v", len(buf), off, err)
		}
		if want := min(int64(len(buf)), size-off); int64(n) != want {
			t.Fatalf("ReadAt(%d, %d) read %d, want %d", len(buf), off, n, want)
		}
		if !bytes.Equal(buf[:n], whole[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d, %d) differs from the sequential read", len(buf), off)
		}
	}
	if n, err := l.ReadAt(make([]byte, 1), size); n != 0 || err != io.EOF {
		t.Errorf("read at the end: %d, %v; want 0, EOF", n, err)
	}
}

// TestLayVanished kills a process of the frozen tree before its pages are
// read: the layout notices at once, reads fail with EIO naming it, and the
// rest of the tree runs on.
func TestLayVanished(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startTree(t)
	kids := mustChildren(t, pid)
	l := lay(t, pid)
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Noticed without a read.
	select {
	case <-l.Failed():
	case <-time.After(5 * time.Second):
		t.Fatal("the layout did not notice the kill")
	}
	_, err := l.ReadAt(make([]byte, 1<<20), 0)
	var te *TaskError
	if !errors.Is(err, ErrGone) || !errors.As(err, &te) || te.Pid != kids[0] {
		t.Fatalf("read after a kill: %v; want ErrGone naming pid %d", err, kids[0])
	}
	if e := Errno(err); e != unix.EIO {
		t.Errorf("errno %v, want EIO", e)
	}
	for _, p := range []int{pid, kids[1]} {
		for i := 0; ; i++ {
			st, err := procfs.ReadStatus(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.TracerPid == 0 && st.State != 't' {
				break
			}
			if i == 100 {
				t.Fatalf("pid %d still frozen (state %c) after its tree failed", p, st.State)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if p, err := os.FindProcess(kids[0]); err == nil {
		p.Kill()
	}
}

// TestLayThaw: after Thaw the tree runs, the small records and a completed
// TAIL can still be read, pages cannot.
func TestLayThaw(t *testing.T) {
	testenv.NeedRoot(t)
	pid := startTree(t)
	l := lay(t, pid)
	if l.Complete() {
		t.Fatal("complete before anything was read")
	}
	whole := readLayout(t, l, 1<<20)
	if !l.Complete() {
		t.Fatal("not complete after a read front to back")
	}
	l.Thaw()
	for _, p := range append([]int{pid}, mustChildren(t, pid)...) {
		if st, err := procfs.ReadStatus(p); err != nil || st.TracerPid != 0 {
			t.Errorf("pid %d still traced after Thaw (%v)", p, err)
		}
	}
	res := l.Result()
	buf := make([]byte, res.Pids.Len)
	if _, err := l.ReadAt(buf, res.Pids.Off); err != nil || !bytes.Equal(buf, whole[res.Pids.Off:res.Pids.Off+res.Pids.Len]) {
		t.Errorf("PIDS after Thaw: %v", err)
	}
	tail := make([]byte, image.TailSize)
	if _, err := l.ReadAt(tail, l.Size()-image.TailSize); err != nil || !bytes.Equal(tail, whole[l.Size()-image.TailSize:]) {
		t.Errorf("TAIL after Thaw: %v", err)
	}
	if _, err := l.ReadAt(make([]byte, 1<<20), 0); err == nil {
		t.Error("pages read after Thaw")
	}
	select {
	case <-l.Failed():
		t.Error("Thaw counts as a failure")
	default:
	}
}
