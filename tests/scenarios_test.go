package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A scenario is a forest workload, a check that /proc shows the shape it
// promises (so a broken workload is not mistaken for a broken ckptfs), and
// the trees to checkpoint in it with the mode each must come out in.
type scenario struct {
	name  string
	shape func(t *testing.T, w *workload, tt *treeTruth)
	roots func(t *testing.T, w *workload) []checkedRoot
}

type checkedRoot struct {
	what string
	pid  int
	mode string
}

// rootOnly checkpoints the workload's root in subtree mode.
func rootOnly(t *testing.T, w *workload) []checkedRoot {
	return []checkedRoot{{"root", w.root, "subtree"}}
}

var scenarios = []scenario{
	{name: "sessions", shape: shapeSessions, roots: rootOnly},
	{name: "deadpgrp", shape: shapeDeadPgrp, roots: rootOnly},
	{name: "deadsession", shape: shapeDeadSession, roots: rootOnly},
	{name: "threads", shape: shapeThreads, roots: rootOnly},
	{name: "zombie", shape: shapeZombie, roots: rootOnly},
	{name: "pidns", shape: shapePidNS, roots: func(t *testing.T, w *workload) []checkedRoot {
		return []checkedRoot{
			{"root", w.root, "subtree"},
			// Inits of nested namespaces whose session and group
			// come from above: subtree mode, pids from outside
			// the root's namespace are "ancestor" (or "root").
			{"initA", w.key(t, "initA"), "subtree"},
			{"initC", w.key(t, "initC"), "subtree"},
			{"initD", w.key(t, "initD"), "subtree"},
		}
	}},
	{name: "container", shape: shapeContainer, roots: func(t *testing.T, w *workload) []checkedRoot {
		return []checkedRoot{
			{"init", w.root, "container"},
			{"launcher", w.key(t, "launcher"), "subtree"},
		}
	}},
}

// TestScenarios reads the image of every scenario's trees through the
// mount with cat, and with `ckptfs checkpoint`, decodes them with
// `ckptfs inspect --json` and compares every number with /proc.
func TestScenarios(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			w := startWorkload(t, sc.name, nil)
			whole := readTreeTruth(t, w.cmd.Process.Pid)
			sc.shape(t, w, readTreeTruth(t, w.root))
			if t.Failed() {
				t.FailNow() // the workload is not what the test needs
			}
			for _, r := range sc.roots(t, w) {
				t.Run(r.what, func(t *testing.T) {
					tt := readTreeTruth(t, r.pid)
					before := tt.signature()
					viaMount := checkThroughMount(t, m, r.pid, tt, r.mode)
					viaCLI := checkThroughCLI(t, r.pid, tt, r.mode)
					if viaMount != nil && viaCLI != nil {
						if d := sameTasks(viaMount, viaCLI); d != "" {
							t.Errorf("the mount's image and checkpoint's decode to different trees:\n%s", d)
						}
					}
					if after := readTreeTruth(t, r.pid).signature(); after != before {
						t.Errorf("the tree changed while it was checkpointed:\nbefore %s\nafter  %s", before, after)
					}
				})
			}
			assertRunning(t, sc.name, whole.ids())
		})
	}
}

// checkThroughMount reads <pid>/{image,pids,tree} with cat while one of the
// files is held open (so all three come from one snapshot), checks the stat
// sizes and that pids and tree are the image's sections, and verifies all
// three decodings against /proc. It returns the image's report.
func checkThroughMount(t *testing.T, m *mount, pid int, tt *treeTruth, mode string) *report {
	t.Helper()
	dir := m.path(pid)
	hold, err := os.Open(filepath.Join(dir, "pids"))
	if err != nil {
		t.Fatalf("open %s/pids: %v", dir, err)
	}
	defer hold.Close()

	out := t.TempDir()
	data := map[string][]byte{}
	for _, name := range []string{"image", "pids", "tree"} {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("stat %s: %v", p, err)
		}
		b := mustRun(t, "cat", p)
		if int64(len(b)) != st.Size() {
			t.Errorf("stat %s says %d bytes, cat read %d", p, st.Size(), len(b))
		}
		if !st.Mode().IsRegular() {
			t.Errorf("%s is %v, want a regular file", p, st.Mode())
		}
		data[name] = b
		if err := os.WriteFile(filepath.Join(out, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	checkSections(t, fmt.Sprintf("%d via the mount", pid), data["image"], data["pids"], data["tree"])

	img := inspect(t, filepath.Join(out, "image"))
	verifyImage(t, fmt.Sprintf("%s/image", dir), img, tt, mode)
	verifySectionFiles(t, dir, img, inspect(t, filepath.Join(out, "pids")), inspect(t, filepath.Join(out, "tree")))
	assertRunning(t, "after reading through the mount", tt.ids())
	return img
}

// checkThroughCLI checkpoints pid with `ckptfs checkpoint PID -o FILE` and
// verifies the decoding against /proc.
func checkThroughCLI(t *testing.T, pid int, tt *treeTruth, mode string) *report {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ckpt.img")
	r := ckptfs(t, "checkpoint", fmt.Sprint(pid), "-o", f)
	if r.err != nil {
		t.Errorf("%s", r)
		return nil
	}
	if len(r.stdout) != 0 {
		t.Errorf("checkpoint -o wrote %d bytes to stdout", len(r.stdout))
	}
	rep := inspect(t, f)
	verifyImage(t, fmt.Sprintf("checkpoint %d", pid), rep, tt, mode)
	assertRunning(t, "after ckptfs checkpoint", tt.ids())
	return rep
}

// TestCheckpointModes forces the mode on the command line: a container can
// be recorded as a subtree, a subtree cannot be recorded as a container
// (the command fails, naming why, and leaves no file behind).
func TestCheckpointModes(t *testing.T) {
	requireEnv(t)
	t.Run("container-as-subtree", func(t *testing.T) {
		w := startWorkload(t, "container", nil)
		tt := readTreeTruth(t, w.root)
		f := filepath.Join(t.TempDir(), "img")
		if r := ckptfs(t, "checkpoint", fmt.Sprint(w.root), "--mode=subtree", "-o", f); r.err != nil {
			t.Fatalf("%s", r)
		}
		verifyImage(t, "checkpoint --mode=subtree of a container", inspect(t, f), tt, "subtree")
		f2 := filepath.Join(t.TempDir(), "img")
		if r := ckptfs(t, "checkpoint", fmt.Sprint(w.root), "--mode=container", "-o", f2); r.err != nil {
			t.Fatalf("%s", r)
		}
		verifyImage(t, "checkpoint --mode=container of a container", inspect(t, f2), tt, "container")
	})
	t.Run("subtree-as-container", func(t *testing.T) {
		w := startWorkload(t, "sessions", nil)
		tt := readTreeTruth(t, w.root)
		f := filepath.Join(t.TempDir(), "img")
		r := ckptfs(t, "checkpoint", fmt.Sprint(w.root), "--mode=container", "-o", f)
		checkCLIError(t, r)
		if _, err := os.Stat(f); err == nil {
			t.Errorf("a failed checkpoint left %s behind", f)
		}
		assertRunning(t, "after a refused checkpoint", tt.ids())
	})
	t.Run("bad-arguments", func(t *testing.T) {
		for _, args := range [][]string{
			{"checkpoint"},
			{"checkpoint", "notapid"},
			{"checkpoint", "0"},
			{"checkpoint", "1", "--mode=sideways"},
			{"inspect"},
			{"inspect", "/nonexistent/image"},
			{"nosuchcommand"},
		} {
			checkCLIError(t, ckptfs(t, args...))
		}
	})
}

// checkCLIError checks that a command failed the way every ckptfs error
// must: non-zero exit, a message starting "ckptfs: " on stderr, no panic.
func checkCLIError(t *testing.T, r result) {
	t.Helper()
	if r.err == nil {
		t.Errorf("%s: succeeded, want an error", r.cmd)
		return
	}
	if r.code <= 0 {
		t.Errorf("%s: did not exit normally with a non-zero status", r)
	}
	if !strings.Contains(string(r.stderr), "ckptfs: ") {
		t.Errorf("%s: stderr has no \"ckptfs: \" message", r)
	}
	if isPanic(r.stderr) {
		t.Errorf("%s: panicked", r)
	}
}

// isPanic reports whether stderr shows a Go panic or fatal runtime error.
func isPanic(stderr []byte) bool {
	s := string(stderr)
	return strings.Contains(s, "panic") || strings.Contains(s, "goroutine ") ||
		strings.Contains(s, "fatal error:") || strings.Contains(s, "SIGSEGV")
}

// ---- the shapes the workloads promise ----

// byComm finds the one process (thread group leader) of tt named comm.
func byComm(t *testing.T, tt *treeTruth, comm string) *truth {
	t.Helper()
	var found *truth
	for _, tr := range tt.tasks {
		if tr.Comm == comm && tr.Tid == tr.Tgid {
			if found != nil {
				t.Fatalf("two processes named %s", comm)
			}
			found = tr
		}
	}
	if found == nil {
		t.Fatalf("workload has no process named %s", comm)
	}
	return found
}

func expect(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf("workload shape: "+format, args...)
	}
}

func last(l []int) int { return l[len(l)-1] }

func gone(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err != nil
}

func shapeSessions(t *testing.T, w *workload, tt *treeTruth) {
	root := tt.byTid[w.root]
	leader := byComm(t, tt, "s-leader")
	early := byComm(t, tt, "s-early")
	grand1 := byComm(t, tt, "s-grand1")
	child1 := byComm(t, tt, "s-child1")
	child2 := byComm(t, tt, "s-child2")
	grand2 := byComm(t, tt, "s-grand2")
	expect(t, leader.NSsid[0] == leader.Tid && leader.NSpgid[0] == leader.Tid, "s-leader leads a session")
	expect(t, early.NSsid[0] == root.NSsid[0] && early.PPid == leader.Tid, "s-early stays in the old session")
	expect(t, child1.NSsid[0] == leader.Tid && child1.NSpgid[0] == leader.Tid, "s-child1 in the leader's group")
	expect(t, grand1.NSsid[0] == leader.Tid && grand1.NSpgid[0] == grand1.Tid && grand1.PPid == child1.Tid, "s-grand1 leads its own group")
	expect(t, child2.NSpgid[0] == child2.Tid && grand2.NSpgid[0] == child2.Tid, "s-grand2 in s-child2's group")
	expect(t, root.NSpgid[0] == root.Tid, "the root leads its group (Setpgid)")
}

func shapeDeadPgrp(t *testing.T, w *workload, tt *treeTruth) {
	dead := w.key(t, "deadleader")
	expect(t, gone(dead), "the group leader %d has exited and been reaped", dead)
	for _, c := range []string{"g-member1", "g-member2", "g-member3"} {
		tr := byComm(t, tt, c)
		expect(t, tr.NSpgid[0] == dead, "%s is in the dead leader's group %d (pgid %v)", c, dead, tr.NSpgid)
	}
	expect(t, byComm(t, tt, "g-member1").PPid == w.root, "g-member1 was reparented to the root")
}

func shapeDeadSession(t *testing.T, w *workload, tt *treeTruth) {
	dead := w.key(t, "deadleader")
	expect(t, gone(dead), "the session leader %d has exited and been reaped", dead)
	for _, c := range []string{"d-member1", "d-member1a", "d-member2"} {
		tr := byComm(t, tt, c)
		expect(t, tr.NSsid[0] == dead, "%s is in the dead leader's session %d (sid %v)", c, dead, tr.NSsid)
	}
	m1, m2 := byComm(t, tt, "d-member1"), byComm(t, tt, "d-member2")
	expect(t, m1.NSpgid[0] == dead && m2.NSpgid[0] == m2.Tid, "d-member1 in the dead group, d-member2 leads its own")
	expect(t, m1.PPid == w.root && m2.PPid == w.root, "the members were reparented to the root")
}

func shapeThreads(t *testing.T, w *workload, tt *treeTruth) {
	child := byComm(t, tt, "t-child")
	grand := byComm(t, tt, "t-grand")
	expect(t, len(threads(w.root)) == 4, "the root has 4 threads, has %d", len(threads(w.root)))
	expect(t, len(threads(child.Tid)) == 3, "t-child has 3 threads, has %d", len(threads(child.Tid)))
	expect(t, grand.PPid == child.Tid, "t-grand is t-child's")
	names := map[string]bool{}
	for _, tr := range tt.tasks {
		names[tr.Comm] = true
	}
	for _, n := range []string{"t-worker1", "t-worker2", "t-worker3", "t-cworker1", "t-cworker2"} {
		expect(t, names[n], "a thread named %s", n)
	}
}

func shapeZombie(t *testing.T, w *workload, tt *treeTruth) {
	z7, zs := byComm(t, tt, "z-exit7"), byComm(t, tt, "z-signal")
	expect(t, z7.State == 'Z' && z7.ExitCode == 7<<8, "z-exit7 is a zombie with wait status 7<<8 (state %c, %d)", z7.State, z7.ExitCode)
	expect(t, zs.State == 'Z' && zs.ExitCode == int(syscall.SIGUSR1), "z-signal is a zombie killed by SIGUSR1 (state %c, %d)", zs.State, zs.ExitCode)
}

func shapePidNS(t *testing.T, w *workload, tt *treeTruth) {
	a, b := tt.byTid[w.key(t, "initA")], tt.byTid[w.key(t, "initB")]
	c, d := tt.byTid[w.key(t, "initC")], tt.byTid[w.key(t, "initD")]
	if a == nil || b == nil || c == nil || d == nil {
		t.Fatalf("the namespace inits are not all in the tree")
	}
	expect(t, len(a.NSpid) == 2 && last(a.NSpid) == 1, "initA is pid 1 one level down: %v", a.NSpid)
	expect(t, len(b.NSpid) == 2 && last(b.NSpid) == 1, "initB is pid 1 one level down: %v", b.NSpid)
	expect(t, a.PidNS != b.PidNS, "initA and initB are in sibling namespaces")
	expect(t, len(c.NSpid) == 3 && last(c.NSpid) == 1, "initC is pid 1 two levels down: %v", c.NSpid)
	expect(t, len(d.NSpid) == 4 && last(d.NSpid) == 1, "initD is pid 1 three levels down: %v", d.NSpid)
	sess := byComm(t, tt, "n-sessA")
	expect(t, sess.NSsid[1] == sess.NSpid[1], "n-sessA leads a session inside ns1: %v %v", sess.NSpid, sess.NSsid)
	gd := byComm(t, tt, "n-grandD")
	expect(t, len(gd.NSpid) == 4 && gd.NSpgid[3] == gd.NSpid[3], "n-grandD leads a group in ns3: %v %v", gd.NSpid, gd.NSpgid)
	expect(t, c.NSsid[2] == 0, "initC's session is not visible in its namespace: %v", c.NSsid)
}

func shapeContainer(t *testing.T, w *workload, tt *treeTruth) {
	in := tt.byTid[w.root]
	expect(t, len(in.NSpid) == 2 && in.NSpid[1] == 1, "the init is pid 1 of a new namespace: %v", in.NSpid)
	for _, tr := range tt.tasks {
		expect(t, len(tr.NSpid) >= 2 && tr.NSsid[1] != 0 && tr.NSpgid[1] != 0,
			"task %d (%s) has its session and group inside the container: %v %v", tr.Tid, tr.Comm, tr.NSsid, tr.NSpgid)
	}
	expect(t, in.NSsid[1] == 1, "the init leads its session")
	z := byComm(t, tt, "c-zombie")
	expect(t, z.State == 'Z' && z.ExitCode == 3<<8, "c-zombie is a zombie with status 3<<8")
	expect(t, len(threads(byComm(t, tt, "c-kid2").Tid)) == 3, "c-kid2 has 3 threads")
}
