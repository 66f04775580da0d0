package image

import (
	"bytes"
	"testing"
)

// A tree with every kind of per-task record, written with the Writer, for
// the tests of the per-task report and of the diff:
//
//	100 app      process: 7 mappings with pages, 12 descriptors (a pipe,
//	             a socket pair, an unlinked file, a memfd, an eventfd,
//	             an epoll, a terminal replaced...), signal handlers, a
//	             timer, pending signals
//	101 app-io   its thread
//	102 child    a process sharing the pipe and holding the socket's peer
//	103 gone     a zombie
//	104 late     (sampleOpts.extraTask) a process with no descriptors

// Addresses of app's mappings.
const (
	sampleCode  = 0x400000
	sampleData  = 0x600000
	sampleHeap  = 0x1000000
	sampleAnon  = 0x7f0000000000
	sampleShm   = 0x7f0000100000
	sampleStack = 0x7ffff0000000
	sampleVDSO  = 0x7ffff8000000
	pg          = 4096
)

// sampleOpts are the ways two samples differ, for the diff's tests.
type sampleOpts struct {
	heapPages    int  // pages of app's heap in the image (and its size)
	anonByte     byte // what app's anonymous pages hold
	anonChanged  int  // of which this many (from the first) hold anonByte+1 instead
	extraFD      bool // app has fd 12 open on /etc/hosts
	extraTask    bool // process 104 exists
	swapChildren bool // the zombie comes before child in TREE
	nofile       uint64
	pos          uint64 // offset of app's fd 1
	childByte    byte   // what child's page holds
	dataAt       uint64 // where app's data mapping starts
	kernel       string
	version      uint32 // of the format; 0 for the current one (2 records no file identity)
	rebuilt      bool   // /usr/bin/app has another size, mtime and build-id
}

// The identity of /usr/bin/app (and of it rebuilt), of the log app writes
// (its size is its offset), and of /etc/hosts.
func sampleIDs(o sampleOpts) (app, log, hosts *FileID) {
	if o.version != 0 && o.version < VersionFileID {
		return nil, nil, nil
	}
	app = &FileID{Size: 16384, MtimeSec: 1_690_000_000, MtimeNsec: 123456789,
		BuildID: []byte{0x4f, 0x0e, 0x2a, 0x7c, 0x9b, 0x1d, 0x3e, 0x5f, 0x60, 0x71, 0x82, 0x93, 0xa4, 0xb5, 0xc6, 0xd7, 0xe8, 0xf9, 0x0a, 0x1b}}
	if o.rebuilt {
		app = &FileID{Size: 16400, MtimeSec: 1_690_000_060, BuildID: []byte{0x9a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07}}
	}
	log = &FileID{Size: o.pos, MtimeSec: 1_700_000_000, MtimeNsec: 5}
	hosts = &FileID{Size: 200, MtimeSec: 1_600_000_000}
	return app, log, hosts
}

func defaultSample() sampleOpts {
	return sampleOpts{heapPages: 3, anonByte: 0xa0, nofile: 200, pos: 1234, childByte: 0x55, dataAt: sampleData, kernel: "6.8.0"}
}

func fill(b byte, pages int) []byte { return bytes.Repeat([]byte{b}, pages*pg) }

// buildSample writes the sample image.
func buildSample(t testing.TB, o sampleOpts) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	pids := Pids{NS: []PidNS{{}}, Pids: []Pid{pid(lv(1, 100)), pid(lv(1, 101)), pid(lv(1, 102)), pid(lv(1, 103))}}
	tasks := []Task{
		{Pid: 1, PPid: TagAncestor, TGid: 1, PGid: TagRoot, Sid: TagRoot},
		{Pid: 2, PPid: TagAncestor, TGid: 1, PGid: TagRoot, Sid: TagRoot},
		{Pid: 3, PPid: 1, TGid: 3, PGid: TagRoot, Sid: TagRoot},
		{Pid: 4, PPid: 1, TGid: 4, PGid: TagRoot, Sid: TagRoot},
	}
	if o.swapChildren {
		tasks[2], tasks[3] = tasks[3], tasks[2]
	}
	if o.extraTask {
		pids.Pids = append(pids.Pids, pid(lv(1, 104)))
		tasks = append(tasks, Task{Pid: 5, PPid: 1, TGid: 5, PGid: TagRoot, Sid: TagRoot})
	}
	appID, logID, hostsID := sampleIDs(o)
	must(w.WriteHeader(&Header{Version: o.version, Arch: ArchX86_64, PageSize: pg, Mode: ModeSubtree, XSaveSize: 832,
		XSaveFeatures: 7, Time: 1_700_000_000_000_000_000, Kernel: o.kernel}))
	must(w.WritePids(&pids))
	must(w.WriteTree(&Tree{Tasks: tasks}))

	creds := &Creds{Uid: [4]uint32{1000, 1000, 1000, 1000}, Gid: [4]uint32{100, 100, 100, 100}, Groups: []uint32{4, 27},
		CapPrm: 1<<10 | 1<<12, CapEff: 1 << 10, CapBnd: allCaps}
	limits := func(nofile uint64) []RLimit {
		l := make([]RLimit, NumRLimits)
		for i := range l {
			l[i] = RLimit{defaultRLimits[i][0], defaultRLimits[i][1]}
		}
		l[6], l[11] = RLimit{63000, 63000}, RLimit{63000, 63000}
		l[7] = RLimit{nofile, 400}
		return l
	}
	thread := func(regs *Regs, blocked uint64, attr *ThreadAttr, pending []PendingSignal, rseq bool) {
		must(w.WriteRegs(regs))
		must(w.WriteSigState(&SigState{Blocked: blocked, AltFlags: ssDisable}))
		if rseq {
			must(w.WriteRSeq(&RSeq{Pointer: 0x7f0000003020, Size: 32, Signature: 0x53053053}))
		}
		must(w.WriteThread(&Thread{ClearChildTid: 0x7f0000001a10, RobustList: 0x7f0000001a20, RobustLen: 24}))
		must(w.WriteThreadAttr(attr))
		must(w.WriteSigPending(pending))
		must(w.WriteCreds(creds))
	}
	process := func(p *Process, nofile uint64, mm *MM, acts []SigAction, timers *[3]ITimer) {
		must(w.WriteProcess(p))
		must(w.WriteRLimits(limits(nofile)))
		must(w.WriteMM(mm))
		must(w.WriteSigHand(acts))
		must(w.WriteITimers(timers))
	}
	regs := func(rip, rsp, nr, ret uint64) *Regs {
		var r Regs
		r.GP[regRIP], r.GP[regRSP], r.GP[regOrigRAX], r.GP[regRAX] = rip, rsp, nr, ret
		r.XSave = make([]byte, 832)
		return &r
	}

	for _, task := range tasks {
		switch task.Pid {
		case 1: // app
			must(w.WriteTask(&TaskState{Pid: 1, State: 'S', Comm: "app"}))
			heapEnd := uint64(sampleHeap + max(o.heapPages, 1)*pg)
			mm := &MM{StartCode: sampleCode, EndCode: sampleCode + 0x1000, StartBrk: sampleHeap, Brk: heapEnd,
				Exe: "/usr/bin/app", Auxv: []uint64{6, 4096, 0, 0},
				VMAs: []VMA{
					{Start: sampleCode, End: sampleCode + 2*pg, Prot: 5, Path: "/usr/bin/app", Dev: 0xfe00, Ino: 77, ID: appID},
					{Start: o.dataAt, End: o.dataAt + pg, Prot: 3, Pgoff: 0x2000, Path: "/usr/bin/app", Dev: 0xfe00, Ino: 77, ID: appID},
					{Start: sampleHeap, End: heapEnd, Prot: 3, Flags: VMAAnon, Special: SpecialHeap, Path: "[heap]"},
					{Start: sampleAnon, End: sampleAnon + 4*pg, Prot: 3, Flags: VMAAnon},
					{Start: sampleShm, End: sampleShm + pg, Prot: 3, Flags: VMAAnon | VMAShared, Path: "/dev/zero (deleted)"},
					{Start: sampleStack, End: sampleStack + 8*pg, Prot: 3, Flags: VMAAnon | VMAGrowsDown, Special: SpecialStack, Path: "[stack]"},
					{Start: sampleVDSO, End: sampleVDSO + 2*pg, Prot: 5, Flags: VMAAnon, Special: SpecialVDSO, Path: "[vdso]"},
				}}
			process(&Process{Cwd: "/srv", Root: "/", Umask: 0o027, Nice: 5, Subreaper: true}, o.nofile, mm,
				[]SigAction{
					{Signo: 13, Handler: sigIgnore},
					{Signo: 10, Handler: 0x401000, Flags: 0x1c000000, Restorer: 0x402000, Mask: 1 << 11},
				}, &[3]ITimer{{Value: 5000, Interval: 10000}, {}, {}})
			must(w.WritePipe(&Pipe{Ino: 500, Size: 65536, Data: []byte("hello")}))
			must(w.WriteFileData(&FileData{Dev: 0xfe00, Ino: 900, Mode: 0o640, Uid: 1000, Gid: 100,
				Name: "/srv/scratch", Size: 10, Data: []byte("0123456789")}))
			must(w.WriteFileData(&FileData{Dev: 0x1, Ino: 901, Mode: 0o600, Memfd: true, Seals: 2 | 4,
				Name: "cache", Size: 8192, Data: []byte("abc")}))
			must(w.WriteSocket(&Socket{Ino: 600, Peer: 601, Type: SockStream, SndBuf: 212992, RcvBuf: 212992,
				PeekOff: -1, Queue: [][]byte{[]byte("ping!!\n")}}))
			must(w.WriteSocket(&Socket{Ino: 601, Peer: 600, Type: SockStream, Shutdown: 2, SndBuf: 212992,
				RcvBuf: 212992, PeekOff: -1}))
			fds := []FD{
				{Num: 0, Kind: FileDevice, Flags: 0o100000, Path: "/dev/null", Dev: 5, Ino: 4},
				{Num: 1, Kind: FileRegular, Flags: 0o2001, Pos: o.pos, Path: "/var/log/app.log", Dev: 0xfe00, Ino: 1234, ID: logID},
				{Num: 2, Kind: FileRegular, Flags: 0o2200000, Path: "/srv", Dev: 0xfe00, Ino: 2},
				{Num: 3, Kind: FilePipe, Flags: 0, Path: "pipe:[500]", Ino: 500},
				{Num: 4, Kind: FilePipe, Flags: 1, Path: "pipe:[500]", Ino: 500},
				{Num: 5, Kind: FileSocket, Flags: 2, Path: "socket:[600]", Ino: 600},
				{Num: 6, Kind: FileDeleted, Flags: 2, Pos: 4, Path: "/srv/scratch (deleted)", Dev: 0xfe00, Ino: 900},
				{Num: 7, Kind: FileDeleted, Flags: 2, Path: "/memfd:cache (deleted)", Dev: 0x1, Ino: 901},
				{Num: 8, Kind: FileEventfd, Flags: 2, Path: "anon_inode:[eventfd]", Extra: []uint64{3, 1}},
				{Num: 9, Kind: FileEpoll, Flags: 2, Path: "anon_inode:[eventpoll]", Extra: []uint64{3, 1 | 1<<31, 0xdead}},
				{Num: 10, Kind: FileReplaced, Flags: 2, Path: "/dev/pts/3", Extra: []uint64{ExternalTerminal, ExternalForeground}},
			}
			if o.extraFD {
				fds = append(fds, FD{Num: 12, Kind: FileRegular, Path: "/etc/hosts", Dev: 0xfe00, Ino: 55, ID: hostsID})
			}
			must(w.WriteFiles(fds))
			thread(regs(0x401234, 0x7ffff0007f00, 230, uint64(0x10000000000000000-516)), 1<<11,
				&ThreadAttr{Policy: SchedBatch, Nice: 5, PDeathSig: 28},
				[]PendingSignal{pending(12, true, 0, 1, 0), pending(14, false, 0x80, 0, 0)}, true)
			must(w.WritePages(o.dataAt, fill(0x11, 1)))
			if o.heapPages > 0 {
				must(w.WritePages(sampleHeap, fill(0x22, o.heapPages)))
			}
			anon := fill(o.anonByte, 2)
			for i := range o.anonChanged {
				anon[i*pg+100] = o.anonByte + 1
			}
			must(w.WritePages(sampleAnon+pg, anon))
			must(w.WritePages(sampleShm, fill(0x33, 1)))
			must(w.WritePages(sampleStack+7*pg, fill(0x44, 1)))
		case 2: // its thread
			must(w.WriteTask(&TaskState{Pid: 2, State: 'S', Comm: "app-io"}))
			thread(regs(0x405555, 0x7f0000002f00, ^uint64(0), 0), ^uint64(0)&^(1<<8|1<<18|1<<31|1<<32),
				&ThreadAttr{Policy: SchedIdle, ResetOnFork: true, Nice: 7}, nil, false)
		case 3: // child
			must(w.WriteTask(&TaskState{Pid: 3, State: 'R', Comm: "child"}))
			mm := &MM{Exe: "/usr/bin/app", VMAs: []VMA{{Start: sampleHeap, End: sampleHeap + pg, Prot: 3, Flags: VMAAnon}}}
			process(&Process{Cwd: "/", Root: "/", Umask: 0o022}, o.nofile, mm, nil, &[3]ITimer{})
			must(w.WriteFiles([]FD{
				{Num: 0, Kind: FilePipe, Flags: 1, Path: "pipe:[500]", Ino: 500},
				{Num: 1, Kind: FileSocket, Flags: 2, Path: "socket:[601]", Ino: 601},
			}))
			thread(regs(0x401000, 0x7ffff0001000, ^uint64(0), 7), 0, &ThreadAttr{}, nil, true)
			must(w.WritePages(sampleHeap, fill(o.childByte, 1)))
		case 4: // zombie
			must(w.WriteTask(&TaskState{Pid: 4, State: 'Z', ExitCode: 0x100, Comm: "gone"}))
		case 5:
			must(w.WriteTask(&TaskState{Pid: 5, State: 'S', Comm: "late"}))
			mm := &MM{Exe: "/usr/bin/late", VMAs: []VMA{{Start: sampleHeap, End: sampleHeap + pg, Prot: 3, Flags: VMAAnon}}}
			process(&Process{Cwd: "/", Root: "/"}, o.nofile, mm, nil, &[3]ITimer{})
			must(w.WriteFiles(nil))
			thread(regs(0x401000, 0x7ffff0001000, ^uint64(0), 0), 0, &ThreadAttr{}, nil, false)
			must(w.WritePages(sampleHeap, fill(0x66, 1)))
		}
	}
	must(w.Close())
	return buf.Bytes()
}

// pending builds a queued signal's siginfo.
func pending(signo uint32, shared bool, code int32, pid int32, uid uint32) PendingSignal {
	p := PendingSignal{Shared: shared}
	le.PutUint32(p.Info[0:], signo)
	le.PutUint32(p.Info[8:], uint32(code))
	le.PutUint32(p.Info[16:], uint32(pid))
	le.PutUint32(p.Info[20:], uid)
	return p
}
