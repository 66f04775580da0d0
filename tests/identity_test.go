package tests

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/internal/fileid"
)

// systemLibc is the C library the dynamic loader finds for bin.
func systemLibc(t *testing.T, bin string) string {
	t.Helper()
	m := regexp.MustCompile(`libc\.so\.6 => (\S+)`).FindSubmatch(mustRun(t, "ldd", bin))
	if m == nil {
		t.Skip("ldd names no libc.so.6")
	}
	return string(m[1])
}

// replaceFile puts a new file at path, made by make at a name beside it
// and renamed over it: another inode, as a copy on another machine is.
func replaceFile(t *testing.T, path string, make func(tmp string)) {
	t.Helper()
	tmp := path + ".new"
	os.Remove(tmp)
	make(tmp)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// inode returns a file's inode number.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// buildIDOf reads a file's build-id, in hex.
func buildIDOf(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, err := fileid.BuildID(f)
	if err != nil || id == nil {
		t.Fatalf("%s: build-id %x, %v", path, id, err)
	}
	return hex.EncodeToString(id)
}

// TestRestoreFileIdentity: the counter, compiled into a directory of its
// own, runs there with a copy of the C library (LD_LIBRARY_PATH), and is
// checkpointed and killed. Then its executable or its library is replaced:
// by a file of another build, by the same library with another mtime, by
// the same library with another build-id and the same size and mtime;
// each restore is refused, the error naming the task, the file and what
// differs, and nothing is left running. So is a copy of the log it writes
// that grew. Last, both are replaced by faithful
// copies (cp -p: other inodes, the same size, mtime and build-id), as on
// another machine, and the restore runs the counter on from where it was,
// writing on to its log (the very file, grown since).
func TestRestoreFileIdentity(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	dir := t.TempDir()
	src := filepath.Join(env.modRoot, "tests", "workload", "counter.c")
	bin := filepath.Join(dir, "counter")
	mustRun(t, "gcc", "-O2", "-mavx", "-pthread", "-o", bin, src)
	libc := filepath.Join(dir, "libc.so.6")
	mustRun(t, "cp", "-p", systemLibc(t, bin), libc)
	// Faithful copies, kept aside to make the files of each case from.
	keep := t.TempDir()
	mustRun(t, "cp", "-p", bin, libc, keep)
	keptBin, keptLibc := filepath.Join(keep, "counter"), filepath.Join(keep, "libc.so.6")

	report := filepath.Join(dir, "report")
	cmd := exec.Command(bin, report, "1")
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); syscall.Kill(pid, syscall.SIGKILL) })
	waitCount(t, report, 10)
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil || !bytes.Contains(maps, []byte(libc)) || !bytes.Contains(maps, []byte(bin)) {
		t.Fatalf("the counter does not map %s and %s (%v):\n%s", bin, libc, err, maps)
	}

	img := filepath.Join(t.TempDir(), "img")
	checkpointTo(t, m, pid, img)
	var procs []imageProc
	for _, tk := range subtree(pid) {
		if tk.tid == tk.tgid {
			procs = append(procs, imageProc{tk.tgid, commOf(tk.tgid)})
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	linesBefore := reportLines(t, report)

	// inspect shows what the image recorded of both files.
	r := ckptfs(t, "inspect", "--json", img)
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	var d detail
	if err := json.Unmarshal(r.stdout, &d); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{bin, libc} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		want := identity{Size: uint64(fi.Size()), Mtime: fi.ModTime().UTC().Format(time.RFC3339Nano), BuildID: buildIDOf(t, path)}
		var seen int
		for _, v := range d.Tasks[0].Memory.Mappings {
			if v.Path != path {
				continue
			}
			seen++
			if v.Identity == nil || *v.Identity != want {
				t.Errorf("inspect: mapping %s of %s: identity %+v, want %+v", v.Start, path, v.Identity, want)
			}
		}
		if seen == 0 {
			t.Errorf("inspect: no mapping of %s", path)
		}
	}

	put := func(path, from string) {
		replaceFile(t, path, func(tmp string) { mustRun(t, "cp", "-p", from, tmp) })
	}
	otherBuildID := func(tmp string) {
		data, err := os.ReadFile(keptLibc)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := hex.DecodeString(buildIDOf(t, keptLibc))
		i := bytes.Index(data, id)
		data[i] ^= 0xff
		if err := os.WriteFile(tmp, data, 0o755); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "touch", "-r", keptLibc, tmp)
	}
	task := fmt.Sprintf(`pid %d \(counter\)`, pid)
	log := report + ".log" // the counter holds it open for writing
	for i, c := range []struct {
		name    string
		damage  func()
		refusal string // what the error says after the task
		undo    func()
	}{
		{"another build of the executable", func() {
			replaceFile(t, bin, func(tmp string) {
				mustRun(t, "gcc", "-O1", "-mavx", "-pthread", "-o", tmp, src)
				mustRun(t, "touch", "-r", keptBin, tmp)
			})
		}, `mapped file: ` + regexp.QuoteMeta(bin) + ` is not the checkpointed file: (size \d+, was \d+; )?build-id [0-9a-f]+, was [0-9a-f]+ \(device`, nil},
		{"the library with another mtime", func() {
			put(libc, keptLibc)
			mustRun(t, "touch", "-d", "@981173106", libc)
		}, `mapped file: ` + regexp.QuoteMeta(libc) + ` is not the checkpointed file: mtime 2001-02-03T04:05:06Z, was \S+ \(device`, nil},
		{"the library with another build-id, same size and mtime", func() {
			replaceFile(t, libc, otherBuildID)
		}, `mapped file: ` + regexp.QuoteMeta(libc) + ` is not the checkpointed file: build-id [0-9a-f]+, was [0-9a-f]+ \(device`, nil},
		// The tree writes its log, which may have grown after the
		// checkpoint: the very file passes, however it grew (the last
		// restore), a copy that differs from it as it was does not.
		{"a grown copy of the log it writes", func() {
			if err := os.Rename(log, log+".orig"); err != nil {
				t.Fatal(err)
			}
			mustRun(t, "cp", "-p", log+".orig", log)
			f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("a line written elsewhere\n")
			f.Close()
		}, `fd \d+: ` + regexp.QuoteMeta(log) + ` is not the checkpointed file: size \d+, was \d+; mtime \S+, was \S+ \(device .*; the tree uses this file through a descriptor or a shared mapping, and only that very file or an unchanged copy of it will do\)$`,
			func() { os.Rename(log+".orig", log) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			put(bin, keptBin)
			put(libc, keptLibc)
			c.damage()
			before := ourChildren()
			out, r := restoreFile(t, m, img, "refused"+strconv.Itoa(i))
			if r.code == 0 || out.State != "failed" {
				t.Fatalf("restore: %s\noutcome %+v", r, out)
			}
			if c.undo != nil {
				c.undo()
			}
			if !regexp.MustCompile(task + `: ` + c.refusal).MatchString(out.Error) {
				t.Errorf("the error %q does not match %s", out.Error, c.refusal)
			}
			t.Logf("refused: %s", out.Error)
			assertNothingRestored(t, c.name, procs, before, m.pid)
		})
	}

	// Faithful copies, other inodes: the counter runs on.
	inodes := [2]uint64{inode(t, keptBin), inode(t, keptLibc)}
	put(bin, keptBin)
	put(libc, keptLibc)
	if got := [2]uint64{inode(t, bin), inode(t, libc)}; got == inodes {
		t.Fatalf("the copies have the inodes %v of the files kept aside", got)
	}
	out, rr := restoreFile(t, m, img, "copies")
	if rr.code != 0 || out.State != "running" || out.Root != pid {
		t.Fatalf("restore from faithful copies: %s\noutcome %+v", rr, out)
	}
	waitCount(t, report, lineCount(t, linesBefore[len(linesBefore)-1])+20)
	after := reportLines(t, report)[len(linesBefore):]
	for _, l := range after {
		if strings.Contains(l, "bad") || strings.Contains(l, "start") || !strings.Contains(l, fmt.Sprintf("pid=%d ", pid)) {
			t.Errorf("after the restore: %q", l)
		}
	}
	maps, _ = os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if !bytes.Contains(maps, []byte(libc)) {
		t.Errorf("the restored counter does not map %s:\n%s", libc, maps)
	}
}
