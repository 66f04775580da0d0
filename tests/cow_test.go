package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/image"
)

// cowWorkload is tests/workload/cow.c running.
type cowWorkload struct {
	pid        int
	report     string
	buf, kept  uint64
	size       int
	cmd        *exec.Cmd
	childOfCmd int // its sleeping child
}

func startCow(t *testing.T, mib int) *cowWorkload {
	t.Helper()
	bin := buildWorkload(t, "cow")
	w := &cowWorkload{report: filepath.Join(t.TempDir(), "report"), size: mib << 20}
	w.cmd = exec.Command(bin, w.report, fmt.Sprint(mib))
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.pid = w.cmd.Process.Pid
	t.Cleanup(func() { killTree(t, w.pid); w.cmd.Process.Kill(); w.cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("cow: %v", err)
	}
	if _, err := fmt.Sscanf(line, "buf %v kept %v", &w.buf, &w.kept); err != nil {
		t.Fatalf("cow said %q: %v", line, err)
	}
	waitLines(t, w.report, 3)
	return w
}

// waitReport waits for a line of the report that holds every one of want,
// written after the first skip lines, and returns it.
func (w *cowWorkload) waitReport(t *testing.T, skip int, want ...string) string {
	t.Helper()
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		lines := reportLines(t, w.report)
		for _, l := range lines[min(skip, len(lines)):] {
			if containsAll(l, want) {
				return l
			}
		}
	}
	lines := reportLines(t, w.report)
	t.Fatalf("cow never reported %q; its last line: %q", want, lines[len(lines)-1])
	return ""
}

// visible is what a tree shows of itself in /proc that a snapshot must
// leave as it was: every task, each one's children, each process's
// descriptors and memory map.
func visible(t *testing.T, root int) string {
	t.Helper()
	var b strings.Builder
	for _, tk := range subtree(root) {
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", tk.tgid, tk.tid))
		fmt.Fprintf(&b, "task %d/%d children [%s]\n", tk.tgid, tk.tid, strings.TrimSpace(string(kids)))
		if tk.tgid != tk.tid {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", tk.tgid))
		for _, fd := range fds {
			to, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", tk.tgid, fd.Name()))
			fmt.Fprintf(&b, "  fd %s -> %s\n", fd.Name(), to)
		}
		maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", tk.tgid))
		b.Write(maps)
	}
	return b.String()
}

// firstTaskPages returns the pages an image holds for its first task, by
// address.
func firstTaskPages(t *testing.T, img []byte) map[uint64][]byte {
	t.Helper()
	r := image.NewReader(bytes.NewReader(img))
	img0, err := r.Prologue()
	if err != nil {
		t.Fatal(err)
	}
	hdr := &img0.Header
	if _, err := r.NextTask(); err != nil {
		t.Fatal(err)
	}
	ps := int(hdr.PageSize)
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
		addr, err := r.ReadPagesAddr(rec, ps)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(data); off += ps {
			pages[addr+uint64(off)] = data[off : off+ps]
		}
	}
}

// TestCopyOnWrite: a process that rewrites all of its memory while its
// image is slowly read (its tree running on, the pages read from a copy)
// gets an image with the memory of the freeze's instant, page for page the
// copy the process kept of it; once the snapshot ends, the tree shows
// nothing of it (tasks, children, descriptors, maps as before; no SIGCHLD,
// nothing for wait); and the image restores to that instant.
func TestCopyOnWrite(t *testing.T) {
	requireEnv(t)
	m := testMount(t, graceArgs("300ms")...)
	w := startCow(t, 32)
	before, tasks := visible(t, w.pid), subtree(w.pid)

	f, err := os.Open(m.path(w.pid, "image"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	assertRunning(t, "with its image open", tasks)
	img := make([]byte, 0, 2*w.size)
	chunk := make([]byte, 256<<10)
	n, err := io.ReadFull(f, chunk)
	if err != nil {
		t.Fatal(err)
	}
	img = append(img, chunk[:n]...)
	lines := len(reportLines(t, w.report))
	if err := syscall.Kill(w.pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	w.waitReport(t, lines, "gen=1")
	// The status counts the copy, and the memory the rewrite duplicated.
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(20 * time.Millisecond) {
		st := statusOf(t, m, w.pid, nil).Snapshot
		if st != nil && st.Copies == 1 && st.Held == 0 && st.Duplicated >= int64(w.size) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status while the image is read: %+v, want one copy, none held, the %d rewritten bytes duplicated", st, w.size)
		}
	}
	// The rest, slowly: a reader that takes its time (a backup tool
	// uploading) must not matter.
	for {
		n, err := f.Read(chunk)
		img = append(img, chunk[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read the image at %d: %v", len(img), err)
		}
		time.Sleep(time.Millisecond)
	}
	f.Close()

	kept := make([]byte, w.size)
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", w.pid))
	if err != nil {
		t.Fatal(err)
	}
	_, err = mem.ReadAt(kept, int64(w.kept))
	mem.Close()
	if err != nil {
		t.Fatalf("read what cow kept: %v", err)
	}
	pages := firstTaskPages(t, img)
	for off := 0; off < w.size; off += os.Getpagesize() {
		p := pages[w.buf+uint64(off)]
		if p == nil {
			t.Fatalf("the image lacks the page at %#x", w.buf+uint64(off))
		}
		if !bytes.Equal(p, kept[off:off+len(p)]) {
			t.Fatalf("the page at %#x is not what the process held at the freeze (it kept a copy)", w.buf+uint64(off))
		}
	}

	// The snapshot ends (its image read through and closed): nothing of
	// it shows.
	for deadline := time.Now().Add(readyTimeout); statusOf(t, m, w.pid, nil).State != "none"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the snapshot never ended: %+v", statusOf(t, m, w.pid, nil))
		}
	}
	if after := visible(t, w.pid); after != before {
		t.Errorf("the tree shows the snapshot after it ended:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	lines = len(reportLines(t, w.report))
	last := w.waitReport(t, lines, "pid=")
	if !containsAll(last, []string{"sigchld=0", "wait=ok"}) {
		t.Errorf("the process noticed the snapshot: %q", last)
	}

	// The image restores to the freeze's instant: generation 0, intact.
	file := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(file, img, 0o600); err != nil {
		t.Fatal(err)
	}
	killTree(t, w.pid)
	w.cmd.Process.Kill()
	w.cmd.Wait()
	out, r := restoreFile(t, m, file, "cow")
	if r.code != 0 || out.Root != w.pid {
		t.Fatalf("restore: %s\noutcome %+v", r, out)
	}
	defer killTree(t, w.pid)
	lines = len(reportLines(t, w.report))
	syscall.Kill(w.pid, syscall.SIGUSR2)
	if l := w.waitReport(t, lines, "mem="); !containsAll(l, []string{"gen=0", "mem=ok", "sigchld=0", "wait=ok"}) {
		t.Errorf("the restored process: %q, want generation 0 with its memory intact", l)
	}
	if slices.Contains(reportLines(t, w.report)[lines:], "bad") {
		t.Errorf("the restored process reported trouble")
	}
}
