package tests

import (
	"encoding/json"
	"errors"
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

	"golang.org/x/sys/unix"
)

// The crash tests kill the daemon at chosen instants of its work and prove
// that whatever instant it dies, a tree it was checkpointing runs on as if
// nothing happened (the sentinel checks itself, see sentinel_test.go), and
// a restore it was making leaves nothing running. Each case ends by
// checkpointing the tree again through a new mount: a task left traced
// could not be frozen again.

// crashGrace is the snapshot grace period of the crash tests' mounts, where
// the daemon takes --grace: short, so that nothing waits for a grace
// period to pass.
const crashGrace = "300ms"

// crashArgs are the mount arguments of the crash tests.
func crashArgs() []string { return graceArgs(crashGrace) }

// graceArgs asks for a grace period, where the daemon takes --grace. The
// cases that kill the daemon within a grace period ask for a long one, so
// that a slow moment of the test cannot let it pass first.
func graceArgs(d string) []string {
	if env.graceFlag {
		return []string{"--grace", d}
	}
	return nil
}

// holdArgs makes a mount keep a tree frozen while its image may be read,
// its pages read from the tree itself (--cow-limit=0), as the cases that
// kill the daemon within that window need.
func holdArgs() []string { return []string{"--cow-limit", "0"} }

// reapLostCopies starts a daemon, which reaps as it starts the copies of
// processes' memory a daemon killed earlier left as zombies in their
// trees (checkpoint.ReapLostCopies): a tree is whole again only then. It
// first waits for the copies in s's tree to have exited: let go by the
// daemon's death, each still has to run into its exit.
func reapLostCopies(t *testing.T, s *sentinel) {
	t.Helper()
	for deadline := time.Now().Add(settleTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if extra := len(subtree(s.pid)) - len(s.tasks); extra <= 0 || lostCopies(s.tasks) == extra {
			break
		}
	}
	testMount(t)
}

// lostCopies counts the children of the tree's tasks that are copies a dead
// daemon let go: zombies with exit signal 0 and exit status 0x43
// (inject.CopyExit).
func lostCopies(tasks []taskID) int {
	n := 0
	for _, tk := range tasks {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", tk.tgid, tk.tid))
		for _, c := range strings.Fields(string(data)) {
			b, err := os.ReadFile("/proc/" + c + "/stat")
			if err != nil {
				continue
			}
			f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
			if len(f) > 49 && f[0] == "Z" && f[35] == "0" && f[49] == strconv.Itoa(0x43<<8) {
				n++
			}
		}
	}
	return n
}

// faultEnv arms a fault point (internal/fault) in the daemon.
func faultEnv(point string) []string {
	return []string{"CKPTFS_FAULT=" + point}
}

// expectFaultDeath waits for a daemon armed with point to have killed
// itself there, and checks that its log names the point: a case cannot
// pass without reaching its instant. r is what the client got: every
// point comes before the client's last answer, so a client that succeeded
// means the daemon did not die there (it is given a second, not more).
func expectFaultDeath(t *testing.T, m *mount, point string, r result) {
	t.Helper()
	name, _, _ := strings.Cut(point, ":")
	wait := stopTimeout
	if r.code == 0 {
		wait = time.Second
	}
	if !m.waitExit(wait) {
		t.Fatalf("the daemon never reached fault point %s: still alive %v after the client finished (%s)", point, stopTimeout, r)
	}
	if want := "ckptfs: fault: killed at " + name; !strings.Contains(m.log(), want) {
		t.Fatalf("the daemon died without logging %q; its output:\n%s", want, m.log())
	}
}

// ---- checkpoint side ----

// TestCrashStatOnly: with copies off, a stat of the image freezes the tree
// for the grace period; the daemon is killed while it is frozen.
func TestCrashStatOnly(t *testing.T) {
	requireEnv(t)
	s := startSentinel(t)
	m := testMountWith(t, nil, append(graceArgs("10s"), holdArgs()...)...)
	if _, err := os.Stat(m.path(s.pid, "image")); err != nil {
		t.Fatal(err)
	}
	if !s.frozen() {
		t.Fatalf("after a stat of its image, %d of the tree's %d tasks are frozen: the case proves nothing", len(stoppedTasks(s.tasks)), len(s.tasks))
	}
	m.kill(t)
	s.assertUnharmed(t, "daemon killed while a stat kept the tree frozen")
	s.checkpointAgain(t)
}

// TestCrashDuringRead kills the daemon, copies off, after a part of the
// image was read (the tree frozen, its pages read from it as the reader
// asks), after it was read through with the file still open, and in the
// grace period after it was read through and closed (the tree already
// running, the snapshot still kept). The reader's next read fails.
func TestCrashDuringRead(t *testing.T) {
	requireEnv(t)
	for _, c := range []struct {
		name     string
		permille int64 // of the image read before the kill
		close    bool  // close the image before the kill
	}{
		{"read-0%", 0, false},
		{"read-10%", 100, false},
		{"read-50%", 500, false},
		{"read-99%", 990, false},
		{"read-through-open", 1000, false},
		{"read-through-closed-in-grace", 1000, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startSentinel(t)
			args := crashArgs()
			if c.close {
				args = graceArgs("10s")
			}
			args = append(args, holdArgs()...)
			m := testMountWith(t, nil, args...)
			f, err := os.Open(m.path(s.pid, "image"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			want := fi.Size() * c.permille / 1000
			n, err := readImageBounded(t, f, want, cmdTimeout)
			if err != nil || n != want {
				t.Fatalf("read %d of the first %d bytes of a %d-byte image: %v", n, want, fi.Size(), err)
			}
			if c.close {
				f.Close()
				// Read through and closed: the tree runs on at once, the
				// snapshot is kept for its grace period.
				assertRunning(t, "after the image was read through and closed", s.tasks)
			} else if !s.frozen() {
				t.Fatalf("with %d of %d bytes of the image read and the file open, %d of %d tasks are frozen: the case proves nothing",
					n, fi.Size(), len(stoppedTasks(s.tasks)), len(s.tasks))
			}
			m.kill(t)
			if !c.close {
				k, err := readImageBounded(t, f, -1, cmdTimeout)
				if err == nil {
					t.Errorf("the daemon is dead, yet the reader read %d more bytes (at offset %d of %d) and reached the end without an error", k, n, fi.Size())
				} else {
					t.Logf("the reader's next read after the daemon's death: %v", err)
				}
				f.Close()
			}
			s.assertUnharmed(t, fmt.Sprintf("daemon killed with %d of %d bytes of the image read", n, fi.Size()))
			s.checkpointAgain(t)
		})
	}
}

// TestCrashWithCopies kills the daemon while the sentinel's image is read
// from copies of its processes' memory, the tree running on: the tree is
// unharmed, and the copies, let go, exit at once; they remain zombies of
// their processes (invisible to wait without __WALL) until the next daemon
// starts and has their processes reap them.
func TestCrashWithCopies(t *testing.T) {
	requireEnv(t)
	s := startSentinel(t)
	m := testMountWith(t, nil, graceArgs("10s")...)
	f, err := os.Open(m.path(s.pid, "image"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := readImageBounded(t, f, fi.Size()/10, cmdTimeout); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	assertRunning(t, "with its image being read from copies", s.tasks)
	if copies := len(subtree(s.pid)) - len(s.tasks); copies == 0 {
		t.Fatal("no copy of the sentinel's memory while its image is read: the case proves nothing")
	}
	m.kill(t)
	var lost int
	for deadline := time.Now().Add(settleTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if lost = lostCopies(s.tasks); lost == len(subtree(s.pid))-len(s.tasks) {
			break
		}
	}
	if lost == 0 || lost != len(subtree(s.pid))-len(s.tasks) {
		t.Errorf("after the daemon's death the tree has %d tasks beside its own %d, of which %d are copies let go",
			len(subtree(s.pid))-len(s.tasks), len(s.tasks), lost)
	}
	reapLostCopies(t, s)
	s.assertUnharmed(t, "daemon killed while the image was read from copies")
	s.checkpointAgain(t)
}

// checkpointFaultPoints are the instants of a checkpoint the daemon can be
// killed at (see internal/fault and internal/inject/guard.go). The guard's
// points are reached once per task (the sentinel has 6: the first, a
// middle one, the last) or once per injected call (tens per checkpoint).
func checkpointFaultPoints() []string {
	points := []string{"checkpoint-frozen"}
	perTask := []int{1, 3, 6}
	perCall := []int{1, 3, 7, 40}
	for _, p := range []struct {
		name string
		ns   []int
	}{
		{"guard-armed", perTask},
		{"guard-blocked", perTask},
		{"guard-entry", perCall},
		{"guard-call", perCall},
		{"guard-exit", perCall},
		{"guard-interrupted", perTask},
		{"guard-unblocked", perTask},
		{"guard-restored", perTask},
	} {
		for _, n := range p.ns {
			points = append(points, fmt.Sprintf("%s:%d", p.name, n))
		}
	}
	// A copy of each large process's memory is forked, then the tree
	// runs on.
	return append(points, "fork-forked:1", "fork-stopped:1", "checkpoint-copied", "checkpoint-laid")
}

// TestCrashAtFaultPoint kills the daemon at each instant of a checkpoint:
// frozen, each step of each call injected into a frozen task, laid out.
func TestCrashAtFaultPoint(t *testing.T) {
	requireEnv(t)
	for _, point := range checkpointFaultPoints() {
		t.Run(point, func(t *testing.T) {
			s := startSentinel(t)
			m := testMountWith(t, faultEnv(point), crashArgs()...)
			r := run(t, cmdTimeout, func(c *exec.Cmd) { c.Stdout = nil }, "cat", m.path(s.pid, "image"))
			expectFaultDeath(t, m, point, r)
			if r.err == nil {
				t.Errorf("cat succeeded though the daemon died at %s", point)
			}
			reapLostCopies(t, s)
			s.assertUnharmed(t, "daemon killed at "+point)
			s.checkpointAgain(t)
		})
	}
}

// ---- restart side ----

// imageProc is a process of an image: its pid and name.
type imageProc struct {
	pid  int
	comm string
}

func commOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// prepareRestoreImage checkpoints a forest "simple" tree through a mount,
// kills it (its pids are free) and returns the image and its processes.
func prepareRestoreImage(t *testing.T) (string, []imageProc) {
	t.Helper()
	m := testMount(t)
	w := startWorkload(t, "simple", nil)
	var procs []imageProc
	for _, tk := range subtree(w.root) {
		if tk.tid == tk.tgid {
			procs = append(procs, imageProc{tk.tgid, commOf(tk.tgid)})
		}
	}
	img := filepath.Join(t.TempDir(), "simple.img")
	checkpointTo(t, m, w.root, img)
	killWorkload(t, w)
	return img, procs
}

// ourChildren lists the children of the test process (of every thread:
// orphans come to a subreaper's threads).
func ourChildren() map[int]bool {
	out := map[int]bool{}
	for _, tid := range threads(os.Getpid()) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", os.Getpid(), tid))
		if err != nil {
			continue
		}
		for c := range strings.FieldsSeq(string(data)) {
			if n, err := strconv.Atoi(c); err == nil {
				out[n] = true
			}
		}
	}
	return out
}

// ppidOf returns a process's parent, 0 if it is gone.
func ppidOf(pid int) int {
	f, err := statFields(pid, pid)
	if err != nil || len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// descendantOfUs reports whether pid is below the test process: what a
// daemon the test started made (seed, restored tasks) always is, another
// process that took one of the pids never is.
func descendantOfUs(pid int) bool {
	self := os.Getpid()
	for p, i := pid, 0; p > 1 && i < 128; i++ {
		pp := ppidOf(p)
		if pp == self {
			return true
		}
		p = pp
	}
	return false
}

// aliveRestored lists the image's pids held by a live process (not a
// zombie) below the test process, and what it is.
func aliveRestored(procs []imageProc) []string {
	var out []string
	for _, p := range procs {
		s := taskState(p.pid, p.pid)
		if s == 0 || s == 'Z' || s == 'X' || !descendantOfUs(p.pid) {
			continue
		}
		f, _ := taskStatus(p.pid, p.pid)
		out = append(out, fmt.Sprintf("pid %d (%s, was %s) state %c, parent %d, tracer %s", p.pid, commOf(p.pid), p.comm, s, ppidOf(p.pid), f["TracerPid"]))
	}
	return out
}

// strays lists the live processes the daemon left to the test process:
// its children not in before (nor the daemon itself).
func strays(before map[int]bool, daemon int) []string {
	var out []string
	for c := range ourChildren() {
		if before[c] || c == daemon {
			continue
		}
		if s := taskState(c, c); s != 0 && s != 'Z' && s != 'X' {
			out = append(out, fmt.Sprintf("pid %d (%s) state %c", c, commOf(c), s))
		}
	}
	return out
}

// clearRestore kills, by pid, whatever a restore left: every live process
// holding one of the image's pids below the test process, and every
// process the daemon left to the test process (not in before) with its
// subtree; it reaps what comes to the test process and waits until the
// image's pids are free for the next restore.
func clearRestore(t testing.TB, procs []imageProc, before map[int]bool, daemon int) {
	t.Helper()
	var killed []proc
	for c := range ourChildren() {
		if !before[c] && c != daemon {
			killed = append(killed, killSubtree(c)...) // a zombie too
		}
	}
	for _, p := range procs {
		if s := taskState(p.pid, p.pid); s != 0 && descendantOfUs(p.pid) {
			killed = append(killed, killSubtree(p.pid)...)
		}
	}
	reapOrDescribe(t, killed)
	deadline := time.Now().Add(reapTimeout)
	for {
		var busy []string
		for _, p := range procs {
			if s := taskState(p.pid, p.pid); s != 0 && descendantOfUs(p.pid) {
				busy = append(busy, fmt.Sprintf("%d(%c, parent %d)", p.pid, s, ppidOf(p.pid)))
			}
		}
		if len(busy) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the image's pids are still taken after clearing the restore: %s", strings.Join(busy, " "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reapOrDescribe is reapProcs for processes that may be anybody's
// children: it waits until each is gone (reaping those that are the test
// process's), and describes the ones that are not.
func reapOrDescribe(t testing.TB, procs []proc) {
	t.Helper()
	deadline := time.Now().Add(reapTimeout)
	pending := procs
	for len(pending) > 0 {
		var still []proc
		for _, p := range pending {
			var ws syscall.WaitStatus
			if got, _ := syscall.Wait4(p.pid, &ws, syscall.WNOHANG|unix.WALL, nil); got == p.pid || startTime(p.pid) != p.start || p.start == 0 {
				continue
			}
			still = append(still, p)
		}
		pending = still
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, p := range pending {
		f, _ := taskStatus(p.pid, p.pid)
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", p.pid))
		stack, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", p.pid))
		t.Errorf("process %d (%s) is not gone %v after SIGKILL: state %s, parent %s (%s), tracer %s, threads %s, wchan %s, stack:\n%s",
			p.pid, commOf(p.pid), reapTimeout, f["State"], f["PPid"], commOf(atoiOr0(f["PPid"])), f["TracerPid"], f["Threads"], wchan, stack)
	}
}

func atoiOr0(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// readOutcome reads restore/<name> of a live daemon.
func readOutcome(t testing.TB, m *mount, name string) (outcome, error) {
	t.Helper()
	var out outcome
	data, err := readWithTimeout(t, m.path("restore", name), cmdTimeout)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("restore/%s is not JSON: %v\n%s", name, err, data)
	}
	return out, nil
}

// assertNothingRestored fails t if, within a bounded wait, a process of
// the image still runs or the daemon left a live process (its seed) to
// the test process: a half-built restore must leave nothing running.
func assertNothingRestored(t testing.TB, what string, procs []imageProc, before map[int]bool, daemon int) {
	t.Helper()
	deadline := time.Now().Add(reapTimeout)
	for {
		alive, left := aliveRestored(procs), strays(before, daemon)
		if len(alive) == 0 && len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if len(alive) > 0 {
				t.Errorf("%s: processes of the image are left running %v after the daemon's death:\n\t%s", what, reapTimeout, strings.Join(alive, "\n\t"))
			}
			if len(left) > 0 {
				t.Errorf("%s: the dead daemon left processes running (its seed?):\n\t%s", what, strings.Join(left, "\n\t"))
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertWholeRestored fails t unless every process of the image runs,
// neither stopped nor traced, under the name it had.
func assertWholeRestored(t testing.TB, what string, procs []imageProc) {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		var bad []string
		for _, p := range procs {
			s := taskState(p.pid, p.pid)
			f, _ := taskStatus(p.pid, p.pid)
			switch {
			case s == 0 || s == 'Z' || s == 'X' || !descendantOfUs(p.pid):
				bad = append(bad, fmt.Sprintf("pid %d (%s) is not running (state %c)", p.pid, p.comm, s))
			case s == 't' || s == 'T' || f["TracerPid"] != "0":
				bad = append(bad, fmt.Sprintf("pid %d (%s) is stopped or traced (state %c, tracer %s)", p.pid, p.comm, s, f["TracerPid"]))
			case commOf(p.pid) != p.comm:
				bad = append(bad, fmt.Sprintf("pid %d is %s, was %s", p.pid, commOf(p.pid), p.comm))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: the restored forest is not whole and running:\n\t%s", what, strings.Join(bad, "\n\t"))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCrashRestart kills the daemon at each instant of a restore: seeded,
// while it builds the forest, fills memory, restores each task's state,
// lets each task go. Nothing of the image may be left running, nor the
// seed, and the writer (cp) must not hang. At restart-committed the
// restore has been committed (the seed was told so, see restart/restore.go,
// "Letting the forest go"): the forest is the restore's result and must
// run on, whole.
func TestCrashRestart(t *testing.T) {
	requireEnv(t)
	img, procs := prepareRestoreImage(t)
	for _, c := range []struct {
		point     string
		committed bool
	}{
		{"restart-seeded", false},
		{"restart-forest:1", false},
		{"restart-forest:2", false},
		{"restart-memory:1", false},
		{"restart-task:1", false},
		{"restart-task:3", false}, // the last task
		{"restart-release:1", false},
		{"restart-release:3", false}, // every task let go, not committed
		{"restart-committed", true},
	} {
		t.Run(c.point, func(t *testing.T) {
			before := ourChildren()
			m := testMountWith(t, faultEnv(c.point), crashArgs()...)
			t.Cleanup(func() { clearRestore(t, procs, before, m.pid) })
			r := run(t, cmdTimeout, nil, "cp", img, m.path("restore", "x"))
			if r.timedOut {
				t.Fatalf("cp hung after the daemon died at %s", c.point)
			}
			if r.code == 0 && !m.waitExit(time.Second) {
				// The point is not there (yet): the restore ran. Kill
				// what it made through its seed.
				if out, err := readOutcome(t, m, "x"); err == nil && out.Seed != 0 {
					reapProcs(t, killSubtree(out.Seed), out.Seed)
				}
			}
			expectFaultDeath(t, m, c.point, r)
			t.Logf("cp after the daemon's death: %s", r)
			if c.committed {
				assertWholeRestored(t, "daemon killed at "+c.point, procs)
				// The seed runs on as the root's parent, now the test's
				// child: the very check that finds a seed left behind
				// after an uncommitted restore sees it.
				seed := ppidOf(procs[0].pid)
				left := strays(before, m.pid)
				if !slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, fmt.Sprintf("pid %d ", seed)) }) {
					t.Errorf("the committed forest's root has parent %d, not a process the daemon left running: %v", seed, left)
				}
				return
			}
			if r.code == 0 {
				t.Errorf("cp succeeded though the daemon died at %s, before the restore was committed", c.point)
			}
			assertNothingRestored(t, "daemon killed at "+c.point, procs, before, m.pid)
		})
	}
}

// TestCrashRestoreWriterKilled kills a writer (cp from a FIFO the test
// feeds) half way through an image it streams into restore/: it must die
// promptly (not stay in D), the restore must be torn down, the outcome say
// "failed", and the daemon keep serving: the whole image, written again,
// restores with the same pids.
func TestCrashRestoreWriterKilled(t *testing.T) {
	requireEnv(t)
	img, procs := prepareRestoreImage(t)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	m := testMount(t, crashArgs()...)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Read-write: the open does not wait for cp, and cp never sees EOF.
	feed, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	cmd := exec.Command("cp", fifo, m.path("restore", "x"))
	logw := &lineLogger{t: t, prefix: "cp: "}
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cp := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			t.Errorf("cp %d (state %c) is not gone %v after SIGKILL", cp, taskState(cp, cp), stopTimeout)
		}
		logw.flush()
	})

	half := len(data) / 2
	wrote := make(chan error, 1)
	go func() {
		_, err := feed.Write(data[:half])
		wrote <- err
	}()
	deadline := time.Now().Add(cmdTimeout)
	for {
		fi, err := os.Stat(m.path("restore", "x"))
		if err == nil && fi.Size() >= int64(half) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restore did not get %d bytes of the image within %v (stat: %v %v)", half, cmdTimeout, fi, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	t.Logf("cp has written %d of the image's %d bytes; killing it", half, len(data))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", cp))
		t.Fatalf("cp %d is still there %v after SIGKILL (state %c); kernel stack:\n%s", cp, stopTimeout, taskState(cp, cp), st)
	}

	// The restore is torn down once the writer is gone (EBUSY until its
	// outcome is known).
	var out outcome
	deadline = time.Now().Add(stopTimeout)
	for {
		out, err = readOutcome(t, m, "x")
		if !errors.Is(err, syscall.EBUSY) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restore/x is still busy %v after its writer was killed", stopTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restore/x after the writer was killed: %v", err)
	}
	if out.State != "failed" || out.Error == "" {
		t.Errorf("restore/x after the writer was killed: %+v, want failed with a reason", out)
	} else {
		t.Logf("restore/x: failed: %s", out.Error)
	}
	// Nothing is left of it: no process of the image, no seed.
	deadline = time.Now().Add(reapTimeout)
	for {
		alive, kids := aliveRestored(procs), childrenOf(m.pid)
		if len(alive) == 0 && kids == "" {
			break
		}
		if time.Now().After(deadline) {
			if len(alive) > 0 {
				t.Errorf("processes of the image are left running %v after the writer was killed:\n\t%s", reapTimeout, strings.Join(alive, "\n\t"))
			}
			if kids != "" {
				t.Errorf("the daemon still has children %v after the failed restore: %s", reapTimeout, kids)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Still serving, and the pids are free again.
	again, r := restoreFile(t, m, img, "y")
	if r.code != 0 || again.State != "running" || again.Root != procs[0].pid {
		t.Fatalf("restoring the whole image after the killed writer: %s\noutcome %+v", r, again)
	}
	assertWholeRestored(t, "restored after the killed writer", procs)
}

// ---- concurrency ----

// TestCrashReadersBesideStuckTree: a tree that cannot be frozen (its root
// waits in FUSE, killably, on a second mount whose daemon is stopped:
// state D, where no ptrace stop reaches it) must not hold up the
// checkpoints of other trees. While its checkpoint is outstanding (it
// fails once the freeze times out), the images of 8 other trees are read
// concurrently through the same mount: all 8 complete first.
func TestCrashReadersBesideStuckTree(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	blocked := testMount(t)
	var trees []*workload
	for range 8 {
		trees = append(trees, startWorkload(t, "simple", nil))
	}
	if err := syscall.Kill(blocked.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Runs before the mount's own cleanup (SIGTERM), after the stuck
	// tree's (SIGKILL, which ends a FUSE wait whose request the daemon
	// has not read).
	t.Cleanup(func() { syscall.Kill(blocked.pid, syscall.SIGCONT) })
	stuck := startWorkload(t, "fusewait", func(c *exec.Cmd) {
		c.Args = append(c.Args, blocked.path("never", "answered"))
	})
	root := stuck.root
	// SIGUSR1 turns its interruptible FUSE wait (S) into the killable one
	// (D). Sent until it shows: one sent before the open began only ran
	// the handler.
	deadline := time.Now().Add(readyTimeout)
	for taskState(root, root) != 'D' {
		if time.Now().After(deadline) {
			sc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", root))
			t.Fatalf("the fusewait root is in state %c, not D (syscall %s)", taskState(root, root), sc)
		}
		syscall.Kill(root, syscall.SIGUSR1)
		time.Sleep(20 * time.Millisecond)
	}

	ninth := make(chan result, 1)
	go func() {
		ninth <- run(t, time.Minute, func(c *exec.Cmd) { c.Stdout = nil }, "cat", m.path(root, "image"))
	}()
	// Outstanding: the daemon has seized the stuck root and waits for it
	// to stop.
	deadline = time.Now().Add(cmdTimeout)
	for {
		// TracerPid names the tracing thread.
		f, _ := taskStatus(root, root)
		if tp := f["TracerPid"]; tp != "0" && tp != "" {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%s", m.pid, tp)); err == nil {
				break
			}
		}
		select {
		case r := <-ninth:
			t.Fatalf("the stuck tree's checkpoint ended before it was seen freezing it: %s", r)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not start freezing the stuck tree within %v (tracer %q)", cmdTimeout, f["TracerPid"])
		}
		time.Sleep(5 * time.Millisecond)
	}

	results := make([]result, len(trees))
	var wg sync.WaitGroup
	for i, w := range trees {
		wg.Go(func() {
			results[i] = run(t, cmdTimeout, nil, "cat", m.path(w.root, "image"))
		})
	}
	wg.Wait()
	select {
	case r := <-ninth:
		t.Errorf("the stuck tree's checkpoint ended (%s) before the 8 others were all read: the test cannot tell whether they waited for it", r)
	default:
	}
	for i, r := range results {
		if r.err != nil {
			t.Errorf("tree %d (%d): %s", i, trees[i].root, r)
		} else {
			inspectBytes(t, fmt.Sprintf("tree%d.img", i), r.stdout)
		}
	}
	r := <-ninth
	if r.err == nil {
		t.Errorf("the checkpoint of a tree stuck in D succeeded")
	} else {
		t.Logf("the stuck tree's checkpoint: %s", r)
	}
	var stuckTasks []taskID
	for _, tid := range threads(root) {
		stuckTasks = append(stuckTasks, taskID{root, tid})
	}
	assertRunning(t, "the stuck tree after its failed checkpoint", stuckTasks)
	if f, _ := taskStatus(root, root); f["TracerPid"] != "0" {
		t.Errorf("the stuck tree's root is still traced by %s", f["TracerPid"])
	}
	for _, w := range trees {
		assertRunning(t, "a tree read beside the stuck one", subtree(w.root))
	}
	if err := syscall.Kill(blocked.pid, syscall.SIGCONT); err != nil {
		t.Error(err)
	}
}
