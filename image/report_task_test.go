package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func readSample(t *testing.T, o sampleOpts) *Report {
	t.Helper()
	rep, err := ReadReport(bytes.NewReader(buildSample(t, o)))
	if err != nil {
		t.Fatalf("ReadReport: %v", err)
	}
	return rep
}

func want[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func TestReportTaskDetail(t *testing.T) {
	rep := readSample(t, defaultSample())
	if rep.Sections != SecImage || len(rep.Details) != 4 || len(rep.Image.Tasks) != 4 {
		t.Fatalf("sections %v, %d details of %d tasks", rep.Sections, len(rep.Details), len(rep.Image.Tasks))
	}
	app, thr, child, zombie := &rep.Details[0], &rep.Details[1], &rep.Details[2], &rep.Details[3]

	want(t, "app process", *app.Process, ProcessDetail{Cwd: "/srv", Root: "/", Umask: "0027", Nice: 5, Subreaper: true})
	want(t, "app NOFILE", app.RLimits[7], RLimitDetail{Resource: "RLIMIT_NOFILE", Soft: 200, Hard: 400})
	want(t, "app CPU", app.RLimits[0], RLimitDetail{Resource: "RLIMIT_CPU", Soft: Limit(RLimInfinity), Hard: Limit(RLimInfinity), Default: true})
	want(t, "app NPROC default", app.RLimits[6].Default, true)

	// The memory map, and the pages of PAGES counted into each mapping.
	m := app.Memory
	want(t, "exe", m.Exe, "/usr/bin/app")
	want(t, "brk", m.Brk, Hex(sampleHeap+3*pg))
	want(t, "mappings", len(m.Mappings), 7)
	appID := &FileIDDetail{Size: 16384, Mtime: "2023-07-22T04:26:40.123456789Z", BuildID: "4f0e2a7c9b1d3e5f60718293a4b5c6d7e8f90a1b"}
	want(t, "code mapping", m.Mappings[0], MappingDetail{Start: sampleCode, End: sampleCode + 2*pg, Size: 2 * pg,
		Prot: "r-x", Path: "/usr/bin/app", Dev: "fe:00", Ino: 77, Identity: appID})
	want(t, "data mapping", m.Mappings[1], MappingDetail{Start: sampleData, End: sampleData + pg, Size: pg,
		Prot: "rw-", Path: "/usr/bin/app", Offset: 0x2000, Dev: "fe:00", Ino: 77, Identity: appID, Pages: 1, Bytes: pg})
	want(t, "heap identity", m.Mappings[2].Identity, (*FileIDDetail)(nil))
	want(t, "heap mapping", m.Mappings[2], MappingDetail{Start: sampleHeap, End: sampleHeap + 3*pg, Size: 3 * pg,
		Prot: "rw-", Anon: true, Special: "heap", Path: "[heap]", Pages: 3, Bytes: 3 * pg})
	want(t, "anon pages", m.Mappings[3].Pages, int64(2))
	want(t, "shared mapping", [3]bool{m.Mappings[4].Shared, m.Mappings[4].Anon, m.Mappings[4].Pages == 1}, [3]bool{true, true, true})
	want(t, "stack", [3]any{m.Mappings[5].Special, m.Mappings[5].GrowsDown, m.Mappings[5].Pages}, [3]any{"stack", true, int64(1)})
	want(t, "vdso pages", m.Mappings[6].Pages, int64(0))
	want(t, "total pages", [3]int64{m.Pages, m.Bytes, m.PagesOutside}, [3]int64{8, 8 * pg, 0})

	// Descriptors of every kind, and what they share.
	fds := app.FDs
	var kinds []string
	for _, f := range fds {
		kinds = append(kinds, f.Kind)
	}
	want(t, "fd kinds", kinds, []string{"device", "regular", "directory", "pipe", "pipe", "socket", "deleted",
		"memfd", "eventfd", "epoll", "replaced"})
	want(t, "fd 0 flags", fds[0].Flags, []string{"O_RDONLY", "O_LARGEFILE"})
	want(t, "fd 1", [3]any{fds[1].Path, fds[1].Pos, fds[1].Flags}, [3]any{"/var/log/app.log", uint64(1234), []string{"O_WRONLY", "O_APPEND"}})
	want(t, "fd 1 identity", fds[1].Identity, &FileIDDetail{Size: 1234, Mtime: "2023-11-14T22:13:20.000000005Z"})
	want(t, "fd 2 flags", fds[2].Flags, []string{"O_RDONLY", "O_DIRECTORY", "O_CLOEXEC"})
	want(t, "fd 2 identity", fds[2].Identity, (*FileIDDetail)(nil))
	want(t, "fd 3 pipe", *fds[3].Pipe, PipeDetail{Ino: 500, Size: 65536, Queued: 5})
	want(t, "fd 3 shared with", fds[3].SharedWith, []Holder{{Pid: []int32{100}, FD: 4, Access: "write"},
		{Pid: []int32{102}, FD: 0, Access: "write"}})
	want(t, "fd 5 socket", *fds[5].Socket, SocketDetail{Ino: 600, Peer: 601, Type: "stream", SndBuf: 212992,
		RcvBuf: 212992, PeekOff: -1, Messages: 1, Queued: 7})
	want(t, "fd 5 peer", fds[5].PeerHeldBy, []Holder{{Pid: []int32{102}, FD: 1, Access: "read-write"}})
	want(t, "fd 5 shared", fds[5].SharedWith, []Holder(nil))
	want(t, "fd 6 file", [4]any{fds[6].File.Name, fds[6].File.Size, fds[6].File.Mode, fds[6].Pos}, [4]any{"/srv/scratch", uint64(10), "0640", uint64(4)})
	want(t, "fd 7 memfd", [3]any{fds[7].File.Memfd, fds[7].File.Seals, fds[7].File.Carried}, [3]any{true, []string{"F_SEAL_SHRINK", "F_SEAL_GROW"}, 3})
	want(t, "fd 8 eventfd", *fds[8].Eventfd, EventfdDetail{Count: 3, Semaphore: true})
	want(t, "fd 9 epoll", fds[9].Epoll, []EpollWatch{{FD: 3, Events: []string{"EPOLLIN", "EPOLLET"}, Data: 0xdead}})
	want(t, "fd 10 replaced", *fds[10].Replaced, ReplacedDetail{Was: "terminal", Foreground: true})
	want(t, "child fd 1 peer", child.FDs[1].PeerHeldBy, []Holder{{Pid: []int32{100}, FD: 5, Access: "read-write"}})
	want(t, "child socket shutdown", child.FDs[1].Socket.Shutdown, "write")

	// Signals.
	s := app.Signals
	want(t, "actions", s.Actions, []SigActionDetail{
		{Signo: 10, Name: "SIGUSR1", Handler: "0x401000", Flags: []string{"SA_RESTORER", "SA_ONSTACK", "SA_RESTART"},
			Restorer: 0x402000, Mask: []string{"SIGUSR2"}},
		{Signo: 13, Name: "SIGPIPE", Handler: "ignore", Flags: []string{}, Mask: []string{}},
	})
	want(t, "blocked", s.Blocked, []string{"SIGUSR2"})
	want(t, "altstack", s.AltStack, (*AltStackDetail)(nil))
	pid1, uid0 := int32(1), uint32(0)
	want(t, "pending", s.Pending, []PendingDetail{
		{Signo: 12, Name: "SIGUSR2", Shared: true, Code: "SI_USER", SenderPid: &pid1, SenderUid: &uid0},
		{Signo: 14, Name: "SIGALRM", Code: "SI_KERNEL"},
	})
	want(t, "timers", s.Timers, []TimerDetail{{"real", 5000, 10000}, {"virtual", 0, 0}, {"prof", 0, 0}})
	want(t, "thread blocked", sigSetText(thr.Signals.blocked), "all but SIGKILL SIGSTOP SIGRTMIN SIGRTMIN+1")
	if thr.Signals.Actions != nil || thr.Process != nil || thr.Memory != nil || thr.FDs != nil {
		t.Errorf("a thread has its process's state: %+v", thr)
	}

	// Credentials, scheduling, the thread's addresses, registers.
	want(t, "uid", app.Creds.Uid, IDs{1000, 1000, 1000, 1000})
	want(t, "groups", app.Creds.Groups, []uint32{4, 27})
	want(t, "cap names", app.Creds.CapEffectiveNames, []string{"CAP_NET_BIND_SERVICE"})
	want(t, "sched", *app.Sched, SchedDetail{Policy: "SCHED_BATCH", Nice: 5, PDeathSig: "SIGWINCH"})
	want(t, "thread sched", *thr.Sched, SchedDetail{Policy: "SCHED_IDLE", ResetOnFork: true, Nice: 7})
	want(t, "rseq", *app.RSeq, RSeqDetail{Area: 0x7f0000003020, Size: 32, Signature: 0x53053053})
	want(t, "futex", *app.Thread, ThreadDetail{ClearChildTid: 0x7f0000001a10, RobustList: 0x7f0000001a20, RobustListLen: 24})
	want(t, "rip rsp", [2]Hex{app.Regs.RIP, app.Regs.RSP}, [2]Hex{0x401234, 0x7ffff0007f00})
	want(t, "syscall", *app.Regs.Syscall, SyscallDetail{Nr: 230, Name: "clock_nanosleep", Return: -516, Errno: "ERESTART_RESTARTBLOCK"})
	want(t, "xsave", app.Regs.XSaveBytes, 832)
	want(t, "thread syscall", thr.Regs.Syscall, (*SyscallDetail)(nil))

	if !reflect.DeepEqual(*zombie, TaskDetail{}) {
		t.Errorf("the zombie has detail: %+v", zombie)
	}

	// The tree's objects, with everyone who holds them.
	want(t, "pipes", rep.Pipes, []PipeObject{{PipeDetail: PipeDetail{Ino: 500, Size: 65536, Queued: 5}, HeldBy: []Holder{
		{Pid: []int32{100}, FD: 3, Access: "read"}, {Pid: []int32{100}, FD: 4, Access: "write"}, {Pid: []int32{102}, FD: 0, Access: "write"}}}})
	want(t, "sockets", len(rep.Sockets), 2)
	want(t, "files", [2]uint64{rep.Files[0].Ino, rep.Files[1].Ino}, [2]uint64{901, 900}) // by device, then inode
}

// TestReportTaskJSON checks the per-task keys of the JSON report, as jq
// would see them.
func TestReportTaskJSON(t *testing.T) {
	rep := readSample(t, defaultSample())
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tasks []map[string]any `json:"tasks"`
		Pipes []map[string]any `json:"pipes"`
		Files []map[string]any `json:"files"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("JSON report does not parse: %v", err)
	}
	get := func(v any, path ...any) any {
		t.Helper()
		for _, p := range path {
			switch k := p.(type) {
			case string:
				m, ok := v.(map[string]any)
				if !ok {
					t.Fatalf("%v: not an object at %q", path, k)
				}
				v = m[k]
			case int:
				l, ok := v.([]any)
				if !ok || k >= len(l) {
					t.Fatalf("%v: not a list of %d at %d", path, k+1, k)
				}
				v = l[k]
			}
		}
		return v
	}
	app := doc.Tasks[0]
	for _, c := range []struct {
		path []any
		want any
	}{
		{[]any{"pid"}, []any{100.0}},
		{[]any{"comm"}, "app"},
		{[]any{"process", "umask"}, "0027"},
		{[]any{"process", "child_subreaper"}, true},
		{[]any{"rlimits", 7}, map[string]any{"resource": "RLIMIT_NOFILE", "soft": 200.0, "hard": 400.0, "default": false}},
		{[]any{"rlimits", 0, "soft"}, "unlimited"},
		{[]any{"memory", "exe"}, "/usr/bin/app"},
		{[]any{"memory", "pages"}, 8.0},
		{[]any{"memory", "bytes"}, 8.0 * pg},
		{[]any{"memory", "mappings", 2, "start"}, "0x1000000"},
		{[]any{"memory", "mappings", 2, "special"}, "heap"},
		{[]any{"memory", "mappings", 2, "pages"}, 3.0},
		{[]any{"memory", "mappings", 2, "bytes"}, 3.0 * pg},
		{[]any{"memory", "mappings", 1, "offset"}, 8192.0},
		{[]any{"memory", "mappings", 1, "dev"}, "fe:00"},
		{[]any{"memory", "mappings", 0, "prot"}, "r-x"},
		{[]any{"memory", "mappings", 0, "identity"}, map[string]any{"size": 16384.0,
			"mtime": "2023-07-22T04:26:40.123456789Z", "build_id": "4f0e2a7c9b1d3e5f60718293a4b5c6d7e8f90a1b"}},
		{[]any{"memory", "mappings", 2, "identity"}, nil},
		{[]any{"fds", 1, "identity"}, map[string]any{"size": 1234.0, "mtime": "2023-11-14T22:13:20.000000005Z"}},
		{[]any{"fds", 1, "flags"}, []any{"O_WRONLY", "O_APPEND"}},
		{[]any{"fds", 1, "pos"}, 1234.0},
		{[]any{"fds", 3, "pipe", "queued"}, 5.0},
		{[]any{"fds", 3, "shared_with", 1, "pid"}, []any{102.0}},
		{[]any{"fds", 5, "socket", "queued"}, 7.0},
		{[]any{"fds", 5, "peer_held_by", 0, "fd"}, 1.0},
		{[]any{"fds", 7, "kind"}, "memfd"},
		{[]any{"fds", 7, "file", "seals"}, []any{"F_SEAL_SHRINK", "F_SEAL_GROW"}},
		{[]any{"fds", 9, "epoll", 0, "events"}, []any{"EPOLLIN", "EPOLLET"}},
		{[]any{"fds", 10, "replaced", "was"}, "terminal"},
		{[]any{"signals", "actions", 0, "name"}, "SIGUSR1"},
		{[]any{"signals", "actions", 0, "handler"}, "0x401000"},
		{[]any{"signals", "actions", 0, "flags"}, []any{"SA_RESTORER", "SA_ONSTACK", "SA_RESTART"}},
		{[]any{"signals", "actions", 1, "handler"}, "ignore"},
		{[]any{"signals", "blocked"}, []any{"SIGUSR2"}},
		{[]any{"signals", "pending", 0, "sender_pid"}, 1.0},
		{[]any{"signals", "timers", 0}, map[string]any{"which": "real", "value_us": 5000.0, "interval_us": 10000.0}},
		{[]any{"creds", "uid", "effective"}, 1000.0},
		{[]any{"creds", "cap_effective"}, "0x400"},
		{[]any{"creds", "cap_effective_names"}, []any{"CAP_NET_BIND_SERVICE"}},
		{[]any{"sched", "policy"}, "SCHED_BATCH"},
		{[]any{"sched", "pdeathsig"}, "SIGWINCH"},
		{[]any{"rseq", "signature"}, "0x53053053"},
		{[]any{"futex", "robust_list_len"}, 24.0},
		{[]any{"regs", "rip"}, "0x401234"},
		{[]any{"regs", "orig_rax"}, "0xe6"},
		{[]any{"regs", "syscall"}, map[string]any{"nr": 230.0, "name": "clock_nanosleep", "return": -516.0, "errno": "ERESTART_RESTARTBLOCK"}},
	} {
		if got := get(app, c.path...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("tasks[0]%v = %#v, want %#v", c.path, got, c.want)
		}
	}
	// The thread has its own state only; the zombie none.
	for _, k := range []string{"process", "memory", "fds", "rlimits"} {
		if _, ok := doc.Tasks[1][k]; ok {
			t.Errorf("the thread's entry has %q", k)
		}
	}
	if get(doc.Tasks[1], "signals", "actions") != nil || get(doc.Tasks[1], "regs", "syscall") != nil {
		t.Errorf("the thread's entry has its process's actions, or a system call it is not in")
	}
	for _, k := range []string{"process", "memory", "fds", "signals", "regs", "creds"} {
		if _, ok := doc.Tasks[3][k]; ok {
			t.Errorf("the zombie's entry has %q", k)
		}
	}
	if got := get(doc.Pipes[0], "held_by"); len(got.([]any)) != 3 {
		t.Errorf("pipes[0].held_by = %v", got)
	}
	if got := get(doc.Files[0], "memfd"); got != true {
		t.Errorf("files[0].memfd = %v", got)
	}
	// Stable: the same image gives the same bytes.
	var again bytes.Buffer
	readSample(t, defaultSample()).WriteJSON(&again)
	if !bytes.Equal(again.Bytes(), b.Bytes()) {
		t.Error("two reports of one image differ")
	}
}

func TestReportTaskText(t *testing.T) {
	rep := readSample(t, defaultSample())
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, re := range []string{
		`(?m)^task 100 \(app\): process, state S, 1 thread$`,
		`(?m)^  process: cwd /srv, root /, umask 0027, nice 5, oom_score_adj 0, child subreaper$`,
		`(?m)^  creds: uid 1000, gid 100, groups 4,27$`,
		`(?m)^    cap eff 0000000000000400 \(CAP_NET_BIND_SERVICE\)$`,
		`(?m)^    cap prm 0000000000001400 \(CAP_NET_BIND_SERVICE CAP_NET_ADMIN\)$`,
		`(?m)^  rlimits: NOFILE 200/400 \(soft/hard; the others default\)$`,
		`(?m)^  sched: SCHED_BATCH, nice 5, pdeathsig SIGWINCH$`,
		`(?m)^  regs: rip 0x401234, rsp 0x7ffff0007f00, in syscall 230 \(clock_nanosleep\), rax -516 \(ERESTART_RESTARTBLOCK\)$`,
		`(?m)^  signals: blocked SIGUSR2; pending SIGUSR2 \(SI_USER, shared, from pid 1 uid 0\), SIGALRM \(SI_KERNEL\)$`,
		`(?m)^    SIGUSR1 +0x401000 +SA_RESTORER\|SA_ONSTACK\|SA_RESTART +mask SIGUSR2$`,
		`(?m)^    SIGPIPE +ignore +- +mask -$`,
		`(?m)^  timers: real in 5000us every 10000us$`,
		`(?m)^  memory: 7 mappings, 8 pages \(32K\) in the image; exe /usr/bin/app, brk 0x1003000$`,
		`(?m)^    START +END +SIZE +PROT +KIND +PAGES +BYTES +OFFSET +PATH$`,
		`(?m)^    1000000 +1003000 +12K +rw-p +heap +3 +12K +- +\[heap\]$`,
		`(?m)^    600000 +601000 +4K +rw-p +file +1 +4K +8192 +/usr/bin/app$`,
		`(?m)^    7f0000100000 +7f0000101000 +4K +rw-s +anon +1 +4K +- +"/dev/zero \(deleted\)"$`,
		`(?m)^    7ffff8000000 +7ffff8002000 +8K +r-xp +vdso +- +- +- +\[vdso\]$`,
		`(?m)^  fds: 11$`,
		`(?m)^    mapped files, as restart checks them:\n      SIZE +MTIME +BUILD-ID +DEV +INO +PATH\n      16384 +2023-07-22T04:26:40.123456789Z +4f0e2a7c9b1d3e5f60718293a4b5c6d7e8f90a1b +fe:00 +77 +/usr/bin/app\n  fds: 11$`,
		`(?m)^    1 +regular +O_WRONLY\|O_APPEND +1234 +/var/log/app.log: size 1234, mtime 2023-11-14T22:13:20.000000005Z$`,
		`(?m)^    2 +directory +O_RDONLY\|O_DIRECTORY\|O_CLOEXEC +0 +/srv$`,
		`(?m)^    3 +pipe +O_RDONLY +0 +pipe:\[500\]: 5 of 65536 bytes queued; also 100:4 \(write\), 102:0 \(write\)$`,
		`(?m)^    5 +socket +O_RDWR +0 +socket:\[600\]: stream, 7 bytes in 1 message queued, peer 601 held by 102:1 \(read-write\)$`,
		`(?m)^    7 +memfd +O_RDWR +0 +"/memfd:cache \(deleted\)": memfd cache 8192 bytes, mode 0600, seals F_SEAL_SHRINK\|F_SEAL_GROW$`,
		`(?m)^    8 +eventfd +O_RDWR +0 +anon_inode:\[eventfd\]: count 3, semaphore$`,
		`(?m)^    9 +epoll +O_RDWR +0 +anon_inode:\[eventpoll\]: watches 3 EPOLLIN\|EPOLLET$`,
		`(?m)^    10 +replaced +O_RDWR +0 +/dev/pts/3: a terminal \(in the foreground\)`,
		`(?m)^task 101 \(app-io\): thread of 100, state S$`,
		`(?m)^  sched: SCHED_IDLE reset-on-fork, nice 7$`,
		`(?m)^  regs: rip 0x405555, rsp 0x7f0000002f00, not in a syscall$`,
		`(?m)^  signals: blocked all but SIGKILL SIGSTOP SIGRTMIN SIGRTMIN\+1$`,
		`(?m)^task 103 \(gone\): process, state Z, exit status 0x100$`,
		`(?m)^pipes: 1$`,
		`(?m)^  500 +65536 +5 +100:3 \(read\), 100:4 \(write\), 102:0 \(write\)$`,
		`(?m)^unlinked files: 2$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("text report lacks %s", re)
		}
	}
	// A thread's creds are shown only where they differ from its
	// leader's, and a zombie has nothing more than its header line.
	if i := strings.Index(text, "task 101"); strings.Contains(text[i:strings.Index(text, "task 102")], "creds:") {
		t.Error("the thread repeats its leader's creds")
	}
	if t.Failed() {
		t.Logf("the report:\n%s", text)
	}
}

// TestReportWithoutDetail: images with no per-task record and standalone
// sections give the reports they gave before (the golden files).
func TestReportWithoutDetail(t *testing.T) {
	for _, name := range []string{"simple.img", "nested.img", "nested.pids", "nested.tree", "nested.pidstree"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := ReadReport(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rep.Details != nil {
			t.Errorf("%s: details without per-task records", name)
		}
		img, s, _ := ReadAny(bytes.NewReader(b))
		var t1, t2, j1, j2 bytes.Buffer
		WriteText(&t1, img, s)
		rep.WriteText(&t2)
		WriteJSON(&j1, img, s)
		rep.WriteJSON(&j2)
		if !bytes.Equal(t1.Bytes(), t2.Bytes()) || !bytes.Equal(j1.Bytes(), j2.Bytes()) {
			t.Errorf("%s: the report differs from ReadAny's", name)
		}
	}
}

// TestReportRefusesWhatReaderRefuses: a flipped bit anywhere in a detailed
// image fails the report (a decoder's check or the TAIL's checksum) with a
// FormatError, and a cut one too.
func TestReportRefusesWhatReaderRefuses(t *testing.T) {
	b := buildSample(t, defaultSample())
	for i := 0; i < len(b); i += 97 {
		c := bytes.Clone(b)
		c[i] ^= 0x04
		if _, err := ReadReport(bytes.NewReader(c)); err == nil {
			t.Fatalf("bit 2 of byte %d flipped: accepted", i)
		}
	}
	for _, n := range []int{len(b) - 1, len(b) / 2, 100} {
		_, err := ReadReport(bytes.NewReader(b[:n]))
		if !isFormatErr(err) {
			t.Errorf("cut at %d: %v", n, err)
		}
	}
}

func isFormatErr(err error) bool {
	var fe *FormatError
	return errors.As(err, &fe)
}

// pagesImage streams an image of one process with n pages of memory,
// without holding it: its pages come from one buffer over and over, page
// k of it holding k (and mark at byte 8 if k is in marked).
func pagesImage(t testing.TB, n int, marked map[int]byte) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		w := NewWriter(pw)
		w.WriteHeader(&Header{Arch: ArchX86_64, PageSize: pg, Mode: ModeSubtree, Kernel: "6.8.0"})
		w.WritePids(&Pids{NS: []PidNS{{}}, Pids: []Pid{pid(lv(1, 100))}})
		w.WriteTree(&Tree{Tasks: []Task{{Pid: 1, PPid: TagAncestor, TGid: 1, PGid: TagRoot, Sid: TagRoot}}})
		w.WriteTask(&TaskState{Pid: 1, State: 'S', Comm: "big"})
		w.WriteMM(&MM{VMAs: []VMA{{Start: sampleHeap, End: sampleHeap + uint64(n)*pg, Prot: 3, Flags: VMAAnon}}})
		var r Regs
		r.GP[regOrigRAX] = ^uint64(0)
		w.WriteRegs(&r)
		run := make([]byte, MaxPagesRecord)
		per := MaxPagesRecord / pg
		for k := 0; k < n; k += per {
			m := min(per, n-k)
			for j := range m {
				p := run[j*pg : (j+1)*pg]
				le.PutUint64(p, uint64(k+j))
				p[8] = marked[k+j]
			}
			w.WritePages(sampleHeap+uint64(k)*pg, run[:m*pg])
		}
		pw.CloseWithError(w.Close())
	}()
	return pr
}

// TestReportStreams: a report of an image of 1 GiB of pages, and a diff
// of two, take memory for their records, not for their pages.
func TestReportStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 3 GiB")
	}
	const pages = 1 << 18 // 1 GiB
	alloc := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	// The writers allocate their page buffer (4 MiB) and a little more.
	const budget = 24 << 20
	var rep *Report
	var err error
	n := alloc(func() { rep, err = ReadReport(pagesImage(t, pages, nil)) })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Details[0].Memory.Pages != pages {
		t.Fatalf("%d pages counted, want %d", rep.Details[0].Memory.Pages, pages)
	}
	if n > budget {
		t.Errorf("a report of %d MiB of pages allocated %d MiB", pages*pg>>20, n>>20)
	}
	var d *Diff
	n = alloc(func() {
		d, err = DiffImages("a", pagesImage(t, pages, nil), "b", pagesImage(t, pages, map[int]byte{7: 1, pages - 1: 2}))
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.Identical || d.Summary.PagesChanged != 2 {
		t.Fatalf("diff: identical %v, %d pages changed, want 2", d.Identical, d.Summary.PagesChanged)
	}
	if n > 2*budget {
		t.Errorf("a diff of two images of %d MiB of pages allocated %d MiB", pages*pg>>20, n>>20)
	}
}

// FuzzReadReport fuzzes detailed images past their checksum (a correct
// TAIL is appended to the fuzzer's records): what ReadReport refuses must
// be a FormatError naming a section, and what it accepts must print, and
// compare with the sample, without a panic.
func FuzzReadReport(f *testing.F) {
	v2, rebuilt := defaultSample(), defaultSample()
	v2.version, rebuilt.rebuilt = 2, true
	for _, o := range []sampleOpts{defaultSample(), {heapPages: 0, anonByte: 1, extraFD: true, extraTask: true,
		swapChildren: true, nofile: 7, childByte: 2, dataAt: 0x800000, kernel: "x"}, v2, rebuilt} {
		b := buildSample(f, o)
		f.Add(b[:len(b)-tailSize])
	}
	sample := buildSample(f, defaultSample())
	f.Fuzz(func(t *testing.T, data []byte) {
		full := assemble(data)
		rep, err := ReadReport(bytes.NewReader(full))
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Section == "" {
				t.Fatalf("error %v is not a *FormatError naming a section", err)
			}
			return
		}
		if err := rep.WriteText(io.Discard); err != nil {
			t.Fatal(err)
		}
		if err := rep.WriteJSON(io.Discard); err != nil {
			t.Fatal(err)
		}
		d, err := DiffImages("a", bytes.NewReader(full), "b", bytes.NewReader(sample))
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("diff of an image ReadReport accepts: %v", err)
			}
			return
		}
		d.WriteText(io.Discard)
		d.WriteJSON(io.Discard)
	})
}
