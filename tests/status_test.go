package tests

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/image"
)

// procStatus is what <pid>/status reads: its JSON fields are a contract,
// spelled out here rather than taken from the fs package, so that a
// renamed field fails these tests.
type procStatus struct {
	Pid      int       `json:"pid"`
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
	Withheld bool      `json:"withheld"`
	Error    string    `json:"error"`
	Errno    string    `json:"errno"`
	Snapshot *struct {
		Time        time.Time `json:"time"`
		Mode        string    `json:"mode"`
		Tasks       int       `json:"tasks"`
		Processes   int       `json:"processes"`
		Threads     int       `json:"threads"`
		Bytes       int64     `json:"bytes"`
		Pages       int64     `json:"pages"`
		PageBytes   int64     `json:"page_bytes"`
		CaptureMS   float64   `json:"capture_ms"`
		FrozenMS    float64   `json:"frozen_ms"`
		Released    time.Time `json:"released"`
		BytesRead   int64     `json:"bytes_read"`
		ReadMS      float64   `json:"read_ms"`
		ReadThrough bool      `json:"read_through"`
		Copies      int       `json:"copies"`
		Held        int       `json:"held"`
		CopiedBytes int64     `json:"copied_bytes"`
		Duplicated  int64     `json:"duplicated_bytes"`
	} `json:"snapshot"`
}

// statusOf reads <pid>/status through the mount with cat, as user (nil:
// the test's own credentials).
func statusOf(t *testing.T, m *mount, pid int, user func(*exec.Cmd)) procStatus {
	t.Helper()
	r := run(t, cmdTimeout, user, "cat", m.path(pid, "status"))
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	var st procStatus
	if err := json.Unmarshal(r.stdout, &st); err != nil {
		t.Fatalf("%d/status is not JSON: %v\n%s", pid, err, r.stdout)
	}
	return st
}

// restoreOutcome is what restore/<name> reads, with the fields of who and
// when besides outcome's.
type restoreOutcome struct {
	State   string    `json:"state"`
	Error   string    `json:"error"`
	Root    int       `json:"root"`
	Seed    int       `json:"seed"`
	Uid     uint32    `json:"uid"`
	Gid     uint32    `json:"gid"`
	Bytes   int64     `json:"bytes"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
}

func restoreOutcomeOf(t *testing.T, m *mount, name string) restoreOutcome {
	t.Helper()
	data, err := readWithTimeout(t, m.path("restore", name), cmdTimeout)
	if err != nil {
		t.Fatalf("read restore/%s: %v", name, err)
	}
	var out restoreOutcome
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("restore/%s is not JSON: %v\n%s", name, err, data)
	}
	return out
}

// startPipedSleep starts `sleep` whose stdin is a pipe the test holds the
// other end of: a descriptor that leads outside its tree.
func startPipedSleep(t *testing.T) int {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "1000")
	cmd.Stdin = pr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		pw.Close()
	})
	waitQuiet(t, cmd.Process.Pid)
	return cmd.Process.Pid
}

// TestStatusRefusal: a refused read leaves its reason in the directory's
// status, exactly as the daemon logged it, with the errno the reader got
// and when: a tree whose stdin leads outside it (EOPNOTSUPP, on a mount
// that refuses such descriptors), the daemon's own process (EDEADLK), a
// task another process traces (EBUSY) and an io_uring (EOPNOTSUPP).
func TestStatusRefusal(t *testing.T) {
	requireEnv(t)
	m := testMount(t, "--external=refuse")

	t.Run("external-pipe", func(t *testing.T) {
		pid := startPipedSleep(t)
		if st := statusOf(t, m, pid, nil); st.State != "none" || st.Error != "" {
			t.Errorf("before any read: %+v", st)
		}
		before := time.Now()
		expectFail(t, run(t, cmdTimeout, nil, "cat", m.path(pid, "image")), "not supported")
		after := time.Now()
		st := statusOf(t, m, pid, nil)
		if st.State != "failed" || st.Errno != "EOPNOTSUPP" || !strings.Contains(st.Error, "fd 0 is") || !strings.Contains(st.Error, "leads outside the tree") {
			t.Errorf("after the refusal: %+v, want failed, EOPNOTSUPP, naming fd 0 and why", st)
		}
		if st.Since.Before(before) || st.Since.After(after) {
			t.Errorf("failed since %v, not between %v and %v", st.Since, before, after)
		}
		if !strings.Contains(m.log(), fmt.Sprintf("%d/image: %s\n", pid, st.Error)) {
			t.Errorf("the status's error %q is not what the daemon logged:\n%s", st.Error, truncate(m.log(), 3000))
		}
		if st.Snapshot != nil {
			t.Errorf("a refused capture shows a snapshot: %+v", st.Snapshot)
		}
		assertRunning(t, "the refused tree", subtree(pid))
	})

	t.Run("daemon", func(t *testing.T) {
		expectFail(t, run(t, cmdTimeout, nil, "cat", m.path(m.pid, "image")), deadlock)
		st := statusOf(t, m, m.pid, nil)
		if st.State != "failed" || st.Errno != "EDEADLK" || !strings.Contains(st.Error, fmt.Sprintf("ckptfs is pid %d", m.pid)) {
			t.Errorf("the daemon's own directory after a read: %+v, want failed, EDEADLK", st)
		}
	})

	// A task another process traces, and a process holding an io_uring.
	bin := buildWorkload(t, "refused")
	for _, c := range []struct {
		mode, errno, says, fails string
	}{
		{"traced", "EBUSY", "traced by pid", "busy"},
		{"uring", "EOPNOTSUPP", "io_uring", "not supported"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			cmd := exec.Command(bin, c.mode)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { killTree(t, cmd.Process.Pid); cmd.Process.Kill(); cmd.Wait() })
			var pid int
			if _, err := fmt.Fscan(out, &pid); err != nil {
				t.Fatal(err)
			}
			expectFail(t, run(t, cmdTimeout, nil, "cat", m.path(pid, "image")), c.fails)
			st := statusOf(t, m, pid, nil)
			if st.State != "failed" || st.Errno != c.errno || !strings.Contains(st.Error, c.says) {
				t.Errorf("after the refusal: %+v, want failed, %s, naming %q", st, c.errno, c.says)
			}
			assertRunning(t, "the refused tree", subtree(pid))
		})
	}
}

// TestStatusSnapshotFigures: after a good snapshot the status gives its
// figures: the image's size as stat says it, tasks, processes and threads
// as /proc shows the tree, the page contents the image carries, the
// capture's and the freeze's durations; after the image is read, what was
// read, and when the tree was let go.
func TestStatusSnapshotFigures(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "threads", nil)
	tt := readTreeTruth(t, w.root)
	processes := 0
	for _, tr := range tt.tasks {
		if tr.Tid == tr.Tgid {
			processes++
		}
	}

	r := run(t, cmdTimeout, nil, "stat", "-c", "%s %.9Y", m.path(w.root, "image"))
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	var size int64
	var mtime string
	if _, err := fmt.Sscan(string(r.stdout), &size, &mtime); err != nil {
		t.Fatalf("stat printed %q: %v", r.stdout, err)
	}
	st := statusOf(t, m, w.root, nil)
	s := st.Snapshot
	// Frozen only while it is laid out: its pages copied, it runs on
	// ("released") while the snapshot is kept.
	if s == nil || (st.State != "released" && st.State != "none") || s.Released.IsZero() {
		t.Fatalf("after a stat of image: %+v, want released (or none once the grace period is over) with a snapshot", st)
	}
	if s.Bytes != size {
		t.Errorf("status says the image has %d bytes, stat says %d", s.Bytes, size)
	}
	if got := fmt.Sprintf("%d.%09d", s.Time.Unix(), s.Time.Nanosecond()); got != mtime {
		t.Errorf("snapshot time %s, the image's mtime %s", got, mtime)
	}
	if s.Tasks != len(tt.tasks) || s.Processes != processes || s.Threads != len(tt.tasks)-processes || s.Threads == 0 {
		t.Errorf("tasks %d, processes %d, threads %d; the tree has %d tasks in %d processes", s.Tasks, s.Processes, s.Threads, len(tt.tasks), processes)
	}
	if s.Pages <= 0 || s.PageBytes != s.Pages*int64(os.Getpagesize()) || s.CaptureMS <= 0 || s.FrozenMS <= 0 || s.Mode != "subtree" {
		t.Errorf("figures %+v: want pages, their bytes, capture and freeze times", *s)
	}

	img := filepath.Join(t.TempDir(), "img")
	mustRun(t, "cp", m.path(w.root, "image"), img)
	st = statusOf(t, m, w.root, nil)
	s = st.Snapshot
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "none" || s == nil || !s.ReadThrough || s.BytesRead < int64(len(data)) || s.Released.IsZero() || s.Bytes != int64(len(data)) {
		t.Fatalf("after cp of image: %+v %+v, want none, read through, released", st, s)
	}
	pages, pageBytes := pagesIn(t, data)
	if s.Pages != pages || s.PageBytes != pageBytes {
		t.Errorf("status says %d pages (%d bytes), the image copied holds %d (%d bytes)", s.Pages, s.PageBytes, pages, pageBytes)
	}
	// The snapshot's time is when its capture began; the tree was frozen
	// from its first task's stop until its release.
	window := s.Released.Sub(s.Time)
	if window <= 0 || s.FrozenMS <= 0 || s.FrozenMS > float64(window.Microseconds())/1000+1 {
		t.Errorf("frozen %v ms, from the snapshot's time to the release %v: want 0 < frozen <= that", s.FrozenMS, window)
	}
	assertRunning(t, "after the figures", tt.ids())
}

// pagesIn counts the page contents of an image: its PAGES records'
// payloads, less their addresses.
func pagesIn(t *testing.T, data []byte) (pages, pageBytes int64) {
	t.Helper()
	for off := 0; off+image.HeaderSize <= len(data); {
		typ := binary.LittleEndian.Uint32(data[off:])
		n := int(binary.LittleEndian.Uint32(data[off+4:]))
		if n < image.HeaderSize {
			t.Fatalf("record of %d bytes at %d", n, off)
		}
		if typ == image.RecPages {
			pageBytes += int64(n - image.HeaderSize - 8)
		}
		off += n
	}
	return pageBytes / int64(os.Getpagesize()), pageBytes
}

// TestStatusFreezesNothing: reading a status (stat, cat, again) never
// freezes the tree: none of its tasks is traced, or stopped.
func TestStatusFreezesNothing(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "simple", nil)
	tasks := subtree(w.root)
	for i := range 3 {
		if _, err := os.Stat(m.path(w.root, "status")); err != nil {
			t.Fatal(err)
		}
		if st := statusOf(t, m, w.root, nil); st.State != "none" || st.Snapshot != nil {
			t.Errorf("read %d: %+v, want none", i, st)
		}
		for _, tk := range tasks {
			if tracer := statusField(t, tk, "TracerPid"); tracer != "0" {
				t.Errorf("read %d: task %d/%d is traced by %s", i, tk.tgid, tk.tid, tracer)
			}
			if s := taskState(tk.tgid, tk.tid); s == 't' || s == 'T' {
				t.Errorf("read %d: task %d/%d is stopped (%c)", i, tk.tgid, tk.tid, s)
			}
		}
	}
}

// statusField returns a field of /proc/<tgid>/task/<tid>/status.
func statusField(t *testing.T, tk taskID, key string) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/status", tk.tgid, tk.tid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/task/%d/status has no %s", tk.tgid, tk.tid, key)
	return ""
}

// processStart is when a process started, as /proc tells it: the boot
// time plus its start time in clock ticks.
func processStart(t *testing.T, pid int) time.Time {
	t.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	var btime int64
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			btime, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if btime == 0 {
		t.Fatal("/proc/stat has no btime")
	}
	return time.Unix(btime, 0).Add(time.Duration(startTime(pid)) * 10 * time.Millisecond)
}

// TestStatusMtimes: a process directory's mtime is its process's start
// time before any snapshot, then its latest snapshot's time, which is the
// section files' and the status's; tar records them, and archives the
// directory, status included, without a warning.
func TestStatusMtimes(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	w := startWorkload(t, "simple", nil)
	dir := m.path(w.root)

	start := processStart(t, w.root)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(start) || fi.ModTime().Year() < 2000 {
		t.Errorf("before any snapshot the directory's mtime is %v, want the process's start %v", fi.ModTime(), start)
	}

	archive := filepath.Join(t.TempDir(), "a.tar")
	r := run(t, cmdTimeout, nil, "tar", "-C", m.dir, "-cf", archive, strconv.Itoa(w.root))
	if r.err != nil || len(r.stderr) > 0 {
		t.Fatalf("tar must exit 0 without a warning: %s", r)
	}
	st := statusOf(t, m, w.root, nil)
	if st.Snapshot == nil {
		t.Fatalf("after tar: %+v, want the snapshot tar read", st)
	}
	taken := st.Snapshot.Time
	fi, err = os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(taken) {
		t.Errorf("after a snapshot the directory's mtime is %v, want the snapshot's %v", fi.ModTime(), taken)
	}

	list := run(t, cmdTimeout, func(c *exec.Cmd) { c.Env = append(os.Environ(), "TZ=UTC") },
		"tar", "--full-time", "-tvf", archive)
	if list.err != nil {
		t.Fatalf("%s", list)
	}
	times := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(list.stdout)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 {
			times[strings.TrimSuffix(f[5], "/")] = f[3] + " " + f[4]
		}
	}
	at := func(tm time.Time) string { return tm.UTC().Format("2006-01-02 15:04:05") }
	root := strconv.Itoa(w.root)
	if got := times[root]; got != at(start) {
		t.Errorf("tar recorded the directory at %q, want the process's start %q:\n%s", got, at(start), list.stdout)
	}
	for _, name := range []string{"pids", "tree", "image"} {
		if got := times[root+"/"+name]; got != at(taken) {
			t.Errorf("tar recorded %s at %q, want the snapshot's %q", name, got, at(taken))
		}
	}
	if _, ok := times[root+"/status"]; !ok {
		t.Errorf("tar did not archive status:\n%s", list.stdout)
	}

	// A new snapshot moves the directory's mtime with it.
	time.Sleep(graceWait)
	if _, err := os.Stat(m.path(w.root, "image")); err != nil {
		t.Fatal(err)
	}
	st = statusOf(t, m, w.root, nil)
	if fi, err = os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	if st.Snapshot == nil || !st.Snapshot.Time.After(taken) || !fi.ModTime().Equal(st.Snapshot.Time) {
		t.Errorf("after a new snapshot the directory's mtime is %v, the status's snapshot %+v; want it, after %v", fi.ModTime(), st.Snapshot, taken)
	}
}

// containerImage checkpoints a container workload into a file: an image
// that restores into a fresh pid namespace, beside its original, any
// number of times.
func containerImage(t *testing.T, m *mount) string {
	t.Helper()
	w := startWorkload(t, "container", nil)
	img := filepath.Join(t.TempDir(), "img")
	if rep := checkpointTo(t, m, w.root, img); rep.Header.Mode != "container" {
		t.Fatalf("mode %q, want container", rep.Header.Mode)
	}
	os.Chmod(filepath.Dir(img), 0o755)
	os.Chmod(img, 0o644)
	return img
}

// TestRestoreStatusOverwrite: cp of an image to a name whose restore has
// ended starts a new restore there, as cp over a file does.
func TestRestoreStatusOverwrite(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	img := containerImage(t, m)

	first, r := restoreFile(t, m, img, "x")
	if r.code != 0 || first.State != "running" {
		t.Fatalf("first restore: %s\noutcome %+v", r, first)
	}
	firstAt := restoreOutcomeOf(t, m, "x")
	second, r := restoreFile(t, m, img, "x")
	if r.code != 0 || second.State != "running" {
		t.Fatalf("second restore under the same name: %s\noutcome %+v", r, second)
	}
	if second.Root == first.Root {
		t.Errorf("both restores report root %d: the second did not run", first.Root)
	}
	again := restoreOutcomeOf(t, m, "x")
	if !again.Started.After(firstAt.Ended) || again.Uid != 0 {
		t.Errorf("the second outcome %+v, want one started after the first ended at %v", again, firstAt.Ended)
	}
	assertRunning(t, "the first restored tree", subtree(first.Root))
	assertRunning(t, "the second restored tree", subtree(second.Root))
}

// TestRestoreStatusBusy: while a restore runs under a name, cp of another
// image there fails with EBUSY, the daemon says why, the status says
// "restoring", and rm fails; the running restore is not disturbed.
func TestRestoreStatusBusy(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	img := containerImage(t, m)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Read-write: the open does not wait for cp.
	feed, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	cmd := exec.Command("cp", fifo, m.path("restore", "x"))
	var cpErr bytes.Buffer
	cmd.Stderr = &cpErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var cpWait error
	go func() {
		cpWait = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			t.Errorf("cp %d is not gone %v after SIGKILL", cmd.Process.Pid, stopTimeout)
		}
	})
	half := len(data) / 2
	if _, err := feed.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(cmdTimeout)
	for {
		fi, err := os.Stat(m.path("restore", "x"))
		if err == nil && fi.Size() >= int64(half) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restore did not get %d bytes within %v (stat: %v %v)", half, cmdTimeout, fi, err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	r := run(t, cmdTimeout, nil, "cp", img, m.path("restore", "x"))
	expectFail(t, r, syscall.EBUSY.Error())
	if !strings.Contains(m.log(), "restore/x: a new image from uid 0 refused: the restore under this name is still running") {
		t.Errorf("the daemon did not say why the new image was refused:\n%s", truncate(m.log(), 3000))
	}
	if out := restoreOutcomeOf(t, m, "x"); out.State != "restoring" || out.Bytes < int64(half) {
		t.Errorf("while restoring: %+v, want restoring with at least %d bytes", out, half)
	}
	expectFail(t, run(t, cmdTimeout, nil, "rm", "-f", m.path("restore", "x")), syscall.EBUSY.Error())

	if _, err := feed.Write(data[half:]); err != nil {
		t.Fatal(err)
	}
	feed.Close()
	select {
	case <-exited:
		if cpWait != nil {
			t.Fatalf("the first cp: %v\n%s", cpWait, cpErr.String())
		}
	case <-time.After(cmdTimeout):
		t.Fatalf("the first cp did not finish within %v", cmdTimeout)
	}
	out := restoreOutcomeOf(t, m, "x")
	if out.Seed != 0 {
		seed := out.Seed
		t.Cleanup(func() { killTree(t, seed); syscall.Kill(seed, syscall.SIGKILL) })
	}
	if out.State != "running" || out.Bytes != int64(len(data)) {
		t.Fatalf("the restore fed through the FIFO: %+v", out)
	}
	assertRunning(t, "the restored tree", subtree(out.Root))
	if r := run(t, cmdTimeout, nil, "rm", m.path("restore", "x")); r.err != nil {
		t.Errorf("rm once it ended: %s", r)
	}
}

// TestRestoreStatusPermissions: with --allow-other, a name of restore/
// belongs to the user who wrote it (ls -l shows it, mode 0600); another
// unprivileged user may neither read it (EACCES) nor write over it
// (EACCES) nor remove it (EPERM); root may read it; its owner removes it.
// restore/ itself cannot be removed.
func TestRestoreStatusPermissions(t *testing.T) {
	requireEnv(t)
	m := testMount(t, "--allow-other")
	const other = 65533
	name := m.path("restore", "n")

	r := run(t, cmdTimeout, asUser(nobody), "sh", "-c", "echo not-an-image > "+name)
	if r.code == 0 {
		t.Errorf("writing a bad image succeeded: %s", r)
	}
	ls := run(t, cmdTimeout, nil, "ls", "-ln", m.path("restore"))
	if f := strings.Fields(string(ls.stdout)); ls.err != nil || len(f) < 6 || f[2] != "-rw-------" || f[4] != strconv.Itoa(nobody) || f[5] != strconv.Itoa(nobody) {
		t.Errorf("ls -ln restore/: %q, want n as -rw------- of %d:%d (%s)", ls.stdout, nobody, nobody, ls)
	}
	expectFail(t, run(t, cmdTimeout, asUser(other), "cat", name), syscall.EACCES.Error())
	expectFail(t, run(t, cmdTimeout, asUser(other), "sh", "-c", "echo x > "+name), syscall.EACCES.Error())
	expectFail(t, run(t, cmdTimeout, asUser(other), "rm", "-f", name), syscall.EPERM.Error())
	if out := restoreOutcomeOf(t, m, "n"); out.State != "failed" || out.Uid != nobody || out.Error == "" {
		t.Errorf("root reads nobody's status: %+v, want failed, uid %d, with the reason", out, nobody)
	}
	if r := run(t, cmdTimeout, asUser(nobody), "cat", name); r.err != nil {
		t.Errorf("nobody reads its own status: %s", r)
	}
	if r := run(t, cmdTimeout, asUser(nobody), "rm", name); r.err != nil {
		t.Errorf("nobody removes its own status: %s", r)
	}
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Errorf("restore/n after rm: %v", err)
	}
	expectFail(t, run(t, cmdTimeout, nil, "rmdir", m.path("restore")), syscall.EPERM.Error())
	if fi, err := os.Stat(m.path("restore")); err != nil || !fi.IsDir() || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("restore/ after rmdir: %v, %v; want the sticky directory", fi, err)
	}
}

// TestStatusWithheld: with --allow-other, a user who may not read a tree's
// checkpoint sees its status's state only, never the error (which names
// tasks and descriptors) or the figures; a user reading its own tree sees
// everything.
func TestStatusWithheld(t *testing.T) {
	requireEnv(t)
	m := testMount(t, "--allow-other")

	expectFail(t, run(t, cmdTimeout, nil, "cat", m.path(m.pid, "image")), deadlock)
	st := statusOf(t, m, m.pid, asUser(nobody))
	if st.State != "failed" || !st.Withheld || st.Error != "" || st.Errno != "" || st.Snapshot != nil || !st.Since.IsZero() {
		t.Errorf("nobody reads the status of root's directory: %+v, want the state only", st)
	}
	if st := statusOf(t, m, m.pid, nil); st.Withheld || st.Errno != "EDEADLK" {
		t.Errorf("root reads it: %+v, want everything", st)
	}

	t.Run("own", func(t *testing.T) {
		if b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil && strings.TrimSpace(string(b)) != "0" {
			t.Skipf("Yama ptrace_scope is %s: an unprivileged user may not ptrace a non-descendant", strings.TrimSpace(string(b)))
		}
		own := startWorkload(t, "simple", asUser(nobody))
		if r := run(t, cmdTimeout, asUser(nobody), "cat", m.path(own.root, "image")); r.err != nil {
			t.Fatalf("nobody cannot read its own process's image: %s", r)
		}
		if st := statusOf(t, m, own.root, asUser(nobody)); st.Withheld || st.Snapshot == nil || st.Snapshot.BytesRead == 0 {
			t.Errorf("nobody reads its own tree's status: %+v, want everything", st)
		}
	})
}
