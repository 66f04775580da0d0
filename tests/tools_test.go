package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestTools reads a process directory with the tools people use on files —
// cat, cp, dd, tar, stat — and checks what they rely on: exact stat sizes,
// one snapshot per directory while it is in use, a new snapshot with a newer
// mtime afterwards.
func TestTools(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "sessions", nil)
	tt := readTreeTruth(t, w.root)
	dir := m.path(w.root)
	files := []string{"image", "pids", "tree"}

	t.Run("cat-cp-dd", func(t *testing.T) {
		// Held open, the image stays one snapshot for every tool.
		hold, err := os.Open(filepath.Join(dir, "image"))
		if err != nil {
			t.Fatal(err)
		}
		defer hold.Close()
		st, err := hold.Stat()
		if err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		src := filepath.Join(dir, "image")
		catBytes := mustRun(t, "cat", src)
		mustRun(t, "cp", src, filepath.Join(out, "cp"))
		mustRun(t, "dd", "if="+src, "of="+filepath.Join(out, "dd"), "bs=1M", "status=none")
		mustRun(t, "dd", "if="+src, "of="+filepath.Join(out, "dd4k"), "bs=4k", "status=none")
		viaFd := readAll(t, hold)
		for _, name := range []string{"cp", "dd", "dd4k"} {
			b, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, catBytes) {
				t.Errorf("%s copied %d bytes that differ from cat's %d", name, len(b), len(catBytes))
			}
		}
		if !bytes.Equal(viaFd, catBytes) {
			t.Errorf("the held descriptor read %d bytes that differ from cat's %d", len(viaFd), len(catBytes))
		}
		if st.Size() != int64(len(catBytes)) {
			t.Errorf("fstat says %d bytes, cat read %d", st.Size(), len(catBytes))
		}
		verifyImage(t, "cp of image", inspect(t, filepath.Join(out, "cp")), tt, "subtree")
	})

	t.Run("stat-size", func(t *testing.T) {
		for _, name := range files {
			p := filepath.Join(dir, name)
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			st, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			pst, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			data := readAll(t, f)
			// A read at the end returns nothing, a read past it too.
			var one [1]byte
			if n, _ := f.ReadAt(one[:], st.Size()+100); n != 0 {
				t.Errorf("%s: a read past the end returned %d bytes", name, n)
			}
			f.Close()
			if int64(len(data)) != st.Size() || pst.Size() != st.Size() {
				t.Errorf("%s: fstat %d, stat %d, read %d bytes", name, st.Size(), pst.Size(), len(data))
			}
			if st.Size() == 0 {
				t.Errorf("%s: size 0 (tar would archive an empty file)", name)
			}
		}
	})

	t.Run("sections", func(t *testing.T) {
		// All three open at once: one snapshot.
		var fs []*os.File
		for _, name := range files {
			f, err := os.Open(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fs = append(fs, f)
		}
		// Read in a different order from the listing, and twice.
		tree, img, pids := readAll(t, fs[2]), readAll(t, fs[0]), readAll(t, fs[1])
		checkSections(t, "held open", img, pids, tree)
		if again := readAll(t, fs[0]); !bytes.Equal(again, img) {
			t.Errorf("reading the held image again gave different bytes")
		}
	})

	t.Run("concurrent-readers", func(t *testing.T) {
		// Several cats at once share one snapshot and read the same
		// bytes. (The image is held open meanwhile: a cat done before
		// another starts lets the tree run, and the next one takes a new
		// snapshot. First let the previous subtest's snapshot expire.)
		time.Sleep(graceWait)
		hold, err := os.Open(filepath.Join(dir, "image"))
		if err != nil {
			t.Fatal(err)
		}
		defer hold.Close()
		const n = 4
		outs := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				outs[i] = run(t, cmdTimeout, nil, "cat", filepath.Join(dir, "image"))
			})
		}
		wg.Wait()
		for i, r := range outs {
			if r.err != nil {
				t.Fatalf("reader %d: %s", i, r)
			}
			if !bytes.Equal(r.stdout, outs[0].stdout) {
				t.Errorf("reader %d read %d bytes that differ from reader 0's %d", i, len(r.stdout), len(outs[0].stdout))
			}
		}
	})

	t.Run("tar", func(t *testing.T) {
		time.Sleep(graceWait) // a fresh snapshot, taken by tar's own stat
		out := t.TempDir()
		archive := filepath.Join(out, "out.tar")
		r := run(t, cmdTimeout, nil, "tar", "-C", m.dir, "-cf", archive, strconv.Itoa(w.root))
		if r.err != nil || len(r.stderr) > 0 {
			t.Fatalf("tar must exit 0 without a warning: %s", r)
		}
		x := filepath.Join(out, "x")
		if err := os.Mkdir(x, 0o755); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "tar", "-C", x, "-xf", archive)
		got := map[string][]byte{}
		for _, name := range files {
			b, err := os.ReadFile(filepath.Join(x, strconv.Itoa(w.root), name))
			if err != nil {
				t.Fatalf("extracted %s: %v", name, err)
			}
			got[name] = b
		}
		listing := string(mustRun(t, "tar", "-tf", archive))
		for _, name := range files {
			if !strings.Contains(listing, fmt.Sprintf("%d/%s", w.root, name)) {
				t.Errorf("the archive lacks %d/%s:\n%s", w.root, name, listing)
			}
		}
		checkSections(t, "extracted from tar", got["image"], got["pids"], got["tree"])
		base := filepath.Join(x, strconv.Itoa(w.root))
		img := inspect(t, filepath.Join(base, "image"))
		verifyImage(t, "image extracted from tar", img, tt, "subtree")
		verifySectionFiles(t, "extracted from tar", img, inspect(t, filepath.Join(base, "pids")), inspect(t, filepath.Join(base, "tree")))
	})

	t.Run("new-snapshot", func(t *testing.T) {
		img := filepath.Join(dir, "image")
		time.Sleep(graceWait) // let earlier subtests' snapshots expire
		dst1, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		hold, err := os.Open(filepath.Join(dir, "pids"))
		if err != nil {
			t.Fatal(err)
		}
		st1 := statT(t, img)
		rep1 := inspectBytes(t, "image1", mustRun(t, "cat", img))

		// Held open: the same snapshot, however long it takes.
		time.Sleep(graceWait)
		st2 := statT(t, img)
		if st2.Mtim != st1.Mtim || st2.Size != st1.Size {
			t.Errorf("while a file of the snapshot was open, the image changed: mtime %v -> %v, size %d -> %d",
				ts(st1.Mtim), ts(st2.Mtim), st1.Size, st2.Size)
		}

		// Closed, and the grace period over: a new snapshot.
		hold.Close()
		time.Sleep(graceWait)
		st3 := statT(t, img)
		if !after(st3.Mtim, st1.Mtim) {
			t.Errorf("a new use after the grace period shows mtime %v, not newer than %v", ts(st3.Mtim), ts(st1.Mtim))
		}
		if !after(st3.Ctim, st1.Ctim) {
			t.Errorf("a new use after the grace period shows ctime %v, not newer than %v", ts(st3.Ctim), ts(st1.Ctim))
		}
		rep3 := inspectBytes(t, "image3", mustRun(t, "cat", img))
		if rep1.Header != nil && rep3.Header != nil && rep3.Header.Time <= rep1.Header.Time {
			t.Errorf("the new snapshot's header time %d is not after the old one's %d", rep3.Header.Time, rep1.Header.Time)
		}
		if d := sameTasks(rep1, rep3); d != "" {
			t.Errorf("two snapshots of an unchanged tree decode differently:\n%s", d)
		}
		dst3, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if ino1, ino3 := dst1.Sys().(*syscall.Stat_t).Ino, dst3.Sys().(*syscall.Stat_t).Ino; ino1 != ino3 {
			t.Errorf("the process directory's inode changed from %d to %d", ino1, ino3)
		}
	})

	t.Run("checkpoint-to-stdout", func(t *testing.T) {
		r := ckptfs(t, "checkpoint", strconv.Itoa(w.root))
		if r.err != nil {
			t.Fatalf("%s", r)
		}
		ir := run(t, cmdTimeout, func(c *exec.Cmd) { c.Stdin = bytes.NewReader(r.stdout) }, env.bin, "inspect", "--json", "-")
		if ir.err != nil {
			t.Fatalf("%s", ir)
		}
		rep := inspectBytes(t, "stdout.img", r.stdout)
		verifyImage(t, "checkpoint to stdout", rep, tt, "subtree")
		if !strings.Contains(string(ir.stdout), `"mode": "subtree"`) && !strings.Contains(string(ir.stdout), `"mode":"subtree"`) {
			t.Errorf("inspect - did not report the header's mode:\n%s", truncate(string(ir.stdout), 2000))
		}
	})

	t.Run("ls", func(t *testing.T) {
		out := string(mustRun(t, "ls", "-l", dir))
		for _, name := range files {
			if !strings.Contains(out, " "+name+"\n") {
				t.Errorf("ls -l %s lacks %s:\n%s", dir, name, out)
			}
		}
	})

	assertRunning(t, "after the tools", tt.ids())
	if after := readTreeTruth(t, w.root).signature(); after != tt.signature() {
		t.Errorf("the workload changed during the tools test")
	}
}

// TestReaddir lists the mount's root: live processes sorted numerically,
// the workload among them (its processes, not its threads), and restore.
func TestReaddir(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "threads", nil)
	tt := readTreeTruth(t, w.root)

	f, err := os.Open(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	names, err := f.Readdirnames(-1) // in the order the filesystem gives
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	var pids []int
	for _, n := range names {
		if listed[n] {
			t.Errorf("%s is listed twice", n)
		}
		listed[n] = true
		if p, err := strconv.Atoi(n); err == nil {
			pids = append(pids, p)
		} else if n != "restore" && n != "shell-job" {
			t.Errorf("unexpected entry %q in the root", n)
		}
	}
	if !listed["restore"] || !listed["shell-job"] {
		t.Errorf("the root lacks restore/ or shell-job/")
	}
	if !slices.IsSorted(pids) {
		t.Errorf("the pids are not sorted numerically: %v", head(pids, 40))
	}
	for _, tr := range tt.tasks {
		name := strconv.Itoa(tr.Tid)
		switch {
		case tr.Tid == tr.Tgid && !listed[name]:
			t.Errorf("process %d (%s) of the workload is not listed", tr.Tid, tr.Comm)
		case tr.Tid != tr.Tgid && listed[name]:
			t.Errorf("thread %d (%s) is listed as if it were a process", tr.Tid, tr.Comm)
		}
	}
	for _, p := range []int{os.Getpid(), m.pid} {
		if !listed[strconv.Itoa(p)] {
			t.Errorf("live process %d is not listed", p)
		}
	}
	if st, err := os.Stat(m.path("restore")); err != nil || !st.IsDir() {
		t.Errorf("restore is not a directory: %v", err)
	}
	if st, err := os.Stat(m.path(w.root)); err != nil || !st.IsDir() {
		t.Errorf("%d is not a directory: %v", w.root, err)
	}
	// A pid that is not a process has no directory.
	for _, name := range []string{"0", "-1", "notapid", "999999999"} {
		if _, err := os.Stat(m.path(name)); err == nil {
			t.Errorf("%s exists in the root", name)
		}
	}
}

func head(l []int, n int) []int {
	if len(l) > n {
		return l[:n]
	}
	return l
}

func statT(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return &st
}

func ts(t syscall.Timespec) time.Time { return time.Unix(t.Sec, t.Nsec) }

func after(a, b syscall.Timespec) bool { return ts(a).After(ts(b)) }
