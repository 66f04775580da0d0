package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// detail is the per-task part of `ckptfs inspect --json` that these tests
// read (see image.TaskDetail for the whole).
type detail struct {
	Tasks []struct {
		Pid    []int  `json:"pid"`
		TGid   []int  `json:"tgid"`
		Comm   string `json:"comm"`
		Memory *struct {
			Exe      string `json:"exe"`
			Pages    int64  `json:"pages"`
			Bytes    int64  `json:"bytes"`
			Mappings []struct {
				Start    string    `json:"start"`
				End      string    `json:"end"`
				Size     uint64    `json:"size"`
				Prot     string    `json:"prot"`
				Shared   bool      `json:"shared"`
				Anon     bool      `json:"anon"`
				Special  string    `json:"special"`
				Path     string    `json:"path"`
				Identity *identity `json:"identity"`
				Pages    int64     `json:"pages"`
				Bytes    int64     `json:"bytes"`
			} `json:"mappings"`
		} `json:"memory"`
		FDs []struct {
			FD       int       `json:"fd"`
			Kind     string    `json:"kind"`
			Path     string    `json:"path"`
			Flags    []string  `json:"flags"`
			Pos      uint64    `json:"pos"`
			Identity *identity `json:"identity"`
			Pipe     *struct {
				Ino    uint64 `json:"ino"`
				Queued int    `json:"queued"`
			} `json:"pipe"`
			File *struct {
				Name  string   `json:"name"`
				Memfd bool     `json:"memfd"`
				Size  uint64   `json:"size"`
				Seals []string `json:"seals"`
			} `json:"file"`
			SharedWith []struct {
				Pid    []int  `json:"pid"`
				FD     int    `json:"fd"`
				Access string `json:"access"`
			} `json:"shared_with"`
		} `json:"fds"`
		Signals *struct {
			Actions []struct {
				Name    string   `json:"name"`
				Handler string   `json:"handler"`
				Flags   []string `json:"flags"`
			} `json:"actions"`
			Blocked  []string `json:"blocked"`
			AltStack *struct {
				Size uint64 `json:"size"`
			} `json:"altstack"`
			Timers []struct {
				Which      string `json:"which"`
				IntervalUs uint64 `json:"interval_us"`
			} `json:"timers"`
		} `json:"signals"`
		RLimits []struct {
			Resource string          `json:"resource"`
			Soft     json.RawMessage `json:"soft"`
			Hard     json.RawMessage `json:"hard"`
		} `json:"rlimits"`
		Sched *struct {
			Policy    string `json:"policy"`
			PDeathSig string `json:"pdeathsig"`
		} `json:"sched"`
		Regs *struct {
			RIP string `json:"rip"`
			RSP string `json:"rsp"`
		} `json:"regs"`
	} `json:"tasks"`
	Pipes []struct {
		Ino    uint64 `json:"ino"`
		Queued int    `json:"queued"`
		HeldBy []struct {
			Pid []int `json:"pid"`
		} `json:"held_by"`
	} `json:"pipes"`
}

// identity is what inspect shows of a file's identity.
type identity struct {
	Size    uint64 `json:"size"`
	Mtime   string `json:"mtime"`
	BuildID string `json:"build_id"`
}

// inspectDetail checkpoints the tree of pid with `ckptfs checkpoint` and
// reads it back with `ckptfs inspect --json`.
func inspectDetail(t *testing.T, pid int) (*detail, string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img")
	if r := ckptfs(t, "checkpoint", strconv.Itoa(pid), "-o", img); r.err != nil {
		t.Fatalf("%s", r)
	}
	r := ckptfs(t, "inspect", "--json", img)
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	var d detail
	if err := json.Unmarshal(r.stdout, &d); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, truncate(string(r.stdout), 4000))
	}
	return &d, img
}

// hexAddr parses a "0x..." address of the JSON report.
func hexAddr(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil || !strings.HasPrefix(s, "0x") {
		t.Fatalf("address %q is not 0x-hex", s)
	}
	return v
}

// TestInspectFilesAndPipes: inspect shows the descriptors of the files
// workload as they are: the deleted file at offset 4 with its 10 bytes,
// the sealed memfd, the named pipe with bytes queued in it and its write
// end in the child, and a memory map whose pages add up.
func TestInspectFilesAndPipes(t *testing.T) {
	requireEnv(t)
	dir := t.TempDir()
	report := filepath.Join(dir, "report")
	bin := buildWorkload(t, "files")
	w := startLogWorkload(t, exec.Command(bin, report, dir), report)
	d, img := inspectDetail(t, w.pid)
	if len(d.Tasks) != 2 {
		t.Fatalf("%d tasks, want the parent and its writer", len(d.Tasks))
	}
	parent, child := &d.Tasks[0], &d.Tasks[1]
	if !slices.Equal(parent.Pid, []int{w.pid}) || parent.Memory == nil || child.Memory == nil {
		t.Fatalf("task 0 is %v, want %d with its memory", parent.Pid, w.pid)
	}

	// The memory map: the program's own mappings, a stack, and the pages
	// of the mappings adding up to the process's.
	m := parent.Memory
	var sum int64
	exeMapped, stack := false, false
	for _, v := range m.Mappings {
		sum += v.Pages
		if v.Bytes != v.Pages*4096 || hexAddr(t, v.End)-hexAddr(t, v.Start) != v.Size {
			t.Errorf("mapping %s-%s: %d pages, %d bytes, size %d", v.Start, v.End, v.Pages, v.Bytes, v.Size)
		}
		exeMapped = exeMapped || v.Path == bin && strings.Contains(v.Prot, "x")
		stack = stack || v.Special == "stack" && v.Pages > 0
	}
	if m.Exe != bin || !exeMapped || !stack || m.Pages == 0 || sum != m.Pages || m.Bytes != m.Pages*4096 {
		t.Errorf("memory: exe %q (want %s, mapped executable: %v), stack with pages %v, %d pages in the image, %d in its mappings",
			m.Exe, bin, exeMapped, stack, m.Pages, sum)
	}

	fds := map[int]int{}
	for i, f := range parent.FDs {
		fds[f.FD] = i
	}
	if _, open := fds[0]; open {
		t.Error("fd 0, which the workload closed, is listed")
	}
	// files.c: the deleted file is fd 3 at offset 4, the memfd fd 4, the
	// fifo's read end fd 5.
	del := parent.FDs[fds[3]]
	if del.Kind != "deleted" || del.Pos != 4 || del.File == nil || del.File.Name != filepath.Join(dir, "gone") ||
		del.File.Size != 10 || del.File.Memfd || !slices.Contains(del.Flags, "O_RDWR") {
		t.Errorf("fd 3: %+v (file %+v), want the deleted %s/gone, O_RDWR, at offset 4, 10 bytes", del, del.File, dir)
	}
	mfd := parent.FDs[fds[4]]
	if mfd.Kind != "memfd" || mfd.File == nil || !mfd.File.Memfd || mfd.File.Name != "ckptfs-test" ||
		!slices.Equal(mfd.File.Seals, []string{"F_SEAL_SHRINK", "F_SEAL_GROW"}) {
		t.Errorf("fd 4: %+v (file %+v), want the memfd ckptfs-test sealed against shrinking and growing", mfd, mfd.File)
	}
	fifo := parent.FDs[fds[5]]
	if fifo.Kind != "fifo" || fifo.Path != filepath.Join(dir, "fifo") || fifo.Pipe == nil || fifo.Pipe.Queued == 0 ||
		!slices.Equal(fifo.Flags[:1], []string{"O_RDONLY"}) {
		t.Fatalf("fd 5: %+v (pipe %+v), want the read end of %s/fifo with bytes queued", fifo, fifo.Pipe, dir)
	}
	// The writer inherited the read end (fd 5) and opened the write end.
	writer := false
	for _, h := range fifo.SharedWith {
		writer = writer || slices.Equal(h.Pid, child.Pid) && h.Access == "write"
	}
	if len(fifo.SharedWith) != 2 || !writer {
		t.Errorf("fd 5 is shared with %+v, want the writer %v's two ends", fifo.SharedWith, child.Pid)
	}
	if len(d.Pipes) != 1 || d.Pipes[0].Ino != fifo.Pipe.Ino || d.Pipes[0].Queued != fifo.Pipe.Queued || len(d.Pipes[0].HeldBy) != 3 {
		t.Errorf("pipes: %+v, want the fifo held by both processes", d.Pipes)
	}
	if child.Sched == nil || child.Sched.PDeathSig != "SIGKILL" {
		t.Errorf("the writer's sched: %+v, want pdeathsig SIGKILL", child.Sched)
	}

	// The text report says the same, a task per header line.
	r := ckptfs(t, "inspect", img)
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	text := string(r.stdout)
	for _, want := range []string{
		fmt.Sprintf("task %d (files): process, state ", w.pid),
		fmt.Sprintf("%s/gone (deleted)\": 10 bytes, mode 0640", dir),
		fmt.Sprintf("bytes queued; also %d:", child.Pid[0]),
		"    START  ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the text report lacks %q:\n%s", want, truncate(text, 6000))
		}
	}
}

// TestInspectSignalsAndLimits: inspect shows the counter's signal
// handlers (in its own code), blocked mask, alternate stack, interval
// timer, resource limits, scheduling, and its log file at an offset that
// ends a line.
func TestInspectSignalsAndLimits(t *testing.T) {
	requireEnv(t)
	cmd, report := startCounter(t, 1, 5)
	pid := cmd.Process.Pid
	d, _ := inspectDetail(t, pid)
	task := &d.Tasks[0]
	if !slices.Equal(task.Pid, []int{pid}) || task.Signals == nil || task.Memory == nil {
		t.Fatalf("task 0: pid %v, signals %v, memory %v", task.Pid, task.Signals, task.Memory)
	}
	inCode := func(addr string) bool {
		a := hexAddr(t, addr)
		for _, v := range task.Memory.Mappings {
			if strings.Contains(v.Prot, "x") && v.Path == task.Memory.Exe && hexAddr(t, v.Start) <= a && a < hexAddr(t, v.End) {
				return true
			}
		}
		return false
	}
	acts := map[string]int{}
	for i, a := range task.Signals.Actions {
		acts[a.Name] = i
	}
	for _, sig := range []string{"SIGUSR1", "SIGALRM"} {
		i, ok := acts[sig]
		if !ok {
			t.Errorf("no %s handler in %+v", sig, task.Signals.Actions)
			continue
		}
		a := task.Signals.Actions[i]
		if !inCode(a.Handler) || !slices.Contains(a.Flags, "SA_RESTART") {
			t.Errorf("%s: handler %s (in the counter's code: %v), flags %v", sig, a.Handler, inCode(a.Handler), a.Flags)
		}
	}
	if i, ok := acts["SIGUSR1"]; ok && !slices.Contains(task.Signals.Actions[i].Flags, "SA_ONSTACK") {
		t.Errorf("SIGUSR1 flags %v lack SA_ONSTACK", task.Signals.Actions[i].Flags)
	}
	if !slices.Contains(task.Signals.Blocked, "SIGUSR2") || task.Signals.AltStack == nil || task.Signals.AltStack.Size != 64<<10 {
		t.Errorf("blocked %v, altstack %+v: want SIGUSR2 blocked and a 64 KiB alternate stack", task.Signals.Blocked, task.Signals.AltStack)
	}
	if len(task.Signals.Timers) != 3 || task.Signals.Timers[0].Which != "real" || task.Signals.Timers[0].IntervalUs != 10000 {
		t.Errorf("timers %+v, want real every 10000us", task.Signals.Timers)
	}
	lim := map[string]string{}
	for _, l := range task.RLimits {
		lim[l.Resource] = string(l.Soft) + "/" + string(l.Hard)
	}
	if lim["RLIMIT_NOFILE"] != "200/400" || lim["RLIMIT_CORE"] != "0/1048576" || lim["RLIMIT_STACK"] != `4194304/"unlimited"` {
		t.Errorf("rlimits %v", lim)
	}
	if task.Sched == nil || task.Sched.Policy != "SCHED_BATCH" || task.Sched.PDeathSig != "SIGWINCH" || task.Regs == nil {
		t.Errorf("sched %+v, regs %+v", task.Sched, task.Regs)
	}
	// Its threads: one under SCHED_IDLE, each with registers of its own.
	idle := 0
	for _, th := range d.Tasks[1:] {
		if th.Sched != nil && th.Sched.Policy == "SCHED_IDLE" {
			idle++
		}
		if th.Memory != nil || th.Regs == nil || th.Regs.RSP == task.Regs.RSP {
			t.Errorf("thread %v: memory %v, regs %+v", th.Pid, th.Memory != nil, th.Regs)
		}
	}
	if len(d.Tasks) < 3 || idle != 1 {
		t.Errorf("%d tasks, %d under SCHED_IDLE: want the counter's threads", len(d.Tasks), idle)
	}
	// The log: write-only, close-on-exec, at the end of a line of it.
	var logFD *struct {
		pos   uint64
		flags []string
	}
	for _, f := range task.FDs {
		if f.Path == report+".log" {
			logFD = &struct {
				pos   uint64
				flags []string
			}{f.Pos, f.Flags}
		}
	}
	data, err := os.ReadFile(report + ".log")
	switch {
	case err != nil:
		t.Fatal(err)
	case logFD == nil:
		t.Errorf("no descriptor on %s.log", report)
	case logFD.pos == 0 || logFD.pos > uint64(len(data)) || data[logFD.pos-1] != '\n' ||
		!slices.Equal(logFD.flags, []string{"O_WRONLY", "O_LARGEFILE", "O_CLOEXEC"}) && !slices.Equal(logFD.flags, []string{"O_WRONLY", "O_CLOEXEC"}):
		t.Errorf("%s.log at offset %d, flags %v: want the end of a line of its %d bytes, O_WRONLY|O_CLOEXEC", report, logFD.pos, logFD.flags, len(data))
	}
}

// TestInspectDiff: two checkpoints of the counter a moment apart differ
// in the contents of its pages (exit status 1); an image against itself
// is identical (0); a missing image is an error (2).
func TestInspectDiff(t *testing.T) {
	requireEnv(t)
	cmd, report := startCounter(t, 1, 5)
	pid := cmd.Process.Pid
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	if r := ckptfs(t, "checkpoint", strconv.Itoa(pid), "-o", a); r.err != nil {
		t.Fatalf("%s", r)
	}
	n := lineCount(t, lastLine(t, report))
	waitCount(t, report, n+10)
	if r := ckptfs(t, "checkpoint", strconv.Itoa(pid), "-o", b); r.err != nil {
		t.Fatalf("%s", r)
	}

	r := ckptfs(t, "inspect", "--diff", "--json", a, b)
	if r.code != 1 {
		t.Fatalf("inspect --diff of two checkpoints of a counting process: want exit status 1, %s", r)
	}
	var d struct {
		Identical bool `json:"identical"`
		Tasks     []struct {
			Pid      int    `json:"pid"`
			Change   string `json:"change"`
			Mappings []struct {
				Change string `json:"change"`
				B      *struct {
					Kind string `json:"kind"`
				} `json:"b"`
				Pages *struct {
					Changed int `json:"changed"`
				} `json:"pages"`
			} `json:"mappings"`
			Pages *struct {
				A, B    int
				Changed int `json:"changed"`
			} `json:"pages"`
		} `json:"tasks"`
		Summary struct {
			Changed      int `json:"changed"`
			PagesChanged int `json:"pages_changed"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(r.stdout, &d); err != nil {
		t.Fatalf("inspect --diff --json: %v\n%s", err, truncate(string(r.stdout), 4000))
	}
	if d.Identical || d.Summary.PagesChanged == 0 || len(d.Tasks) == 0 || d.Tasks[0].Pid != pid || d.Tasks[0].Change != "changed" {
		t.Fatalf("the diff: %s", truncate(string(r.stdout), 4000))
	}
	// The counter rewrites words of its 1 MiB buffer, an anonymous
	// mapping (or the heap).
	changedAnon := false
	for _, m := range d.Tasks[0].Mappings {
		if m.Change == "pages" && m.Pages != nil && m.Pages.Changed > 0 && m.B != nil && (m.B.Kind == "anon" || m.B.Kind == "heap") {
			changedAnon = true
		}
	}
	if !changedAnon || d.Tasks[0].Pages == nil || d.Tasks[0].Pages.Changed == 0 {
		t.Errorf("no anonymous mapping of the counter has pages changed:\n%s", truncate(string(r.stdout), 4000))
	}
	if r := ckptfs(t, "inspect", "--diff", a, b); r.code != 1 || !strings.Contains(string(r.stdout), fmt.Sprintf("~ task %d (counter)", pid)) ||
		!strings.Contains(string(r.stdout), "\ndiffer: ") {
		t.Errorf("text diff: %s\n%s", r, r.stdout)
	}

	r = ckptfs(t, "inspect", "--diff", a, a)
	if r.code != 0 || !strings.Contains(string(r.stdout), "identical") {
		t.Errorf("inspect --diff of an image with itself: %s\n%s", r, r.stdout)
	}
	r = ckptfs(t, "inspect", "--diff", "--json", a, a)
	if r.code != 0 || !strings.Contains(string(r.stdout), `"identical": true`) {
		t.Errorf("inspect --diff --json of an image with itself: %s\n%s", r, r.stdout)
	}
	r = ckptfs(t, "inspect", "--diff", a, filepath.Join(dir, "missing.img"))
	if r.code != 2 || !strings.HasPrefix(string(r.stderr), "ckptfs: inspect: ") {
		t.Errorf("inspect --diff of a missing image: want exit status 2 and the error, %s", r)
	}
}

// lastLine returns the last line of a report file.
func lastLine(t *testing.T, path string) string {
	t.Helper()
	l := reportLines(t, path)
	return l[len(l)-1]
}
