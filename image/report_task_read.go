package image

import (
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Decoding the per-task records into the report's model (report_task.go).

// objKind says which shared object a descriptor refers to.
type objKind uint8

const (
	objNone objKind = iota
	objPipe
	objSocket
	objFile
)

type objRef struct {
	kind     objKind
	dev, ino uint64
}

// read decodes one per-task record (not PAGES, which the cursor counts)
// into d.
func (d *TaskDetail) read(r *Reader, rec Record) error {
	d.records++
	var err error
	switch rec.Type {
	case RecProcess:
		var p *Process
		if p, err = r.ReadProcess(rec); err == nil {
			d.Process = processDetail(p)
		}
	case RecRLimits:
		var l []RLimit
		if l, err = r.ReadRLimits(rec); err == nil {
			d.RLimits = rlimitDetails(l)
		}
	case RecMM:
		var m *MM
		if m, err = r.ReadMM(rec); err == nil {
			d.setMemory(m)
		}
	case RecFiles:
		var fds []FD
		if fds, err = r.ReadFiles(rec); err == nil {
			d.FDs = fdDetails(fds)
		}
	case RecPipe:
		var p *Pipe
		if p, err = r.ReadPipe(rec); err == nil {
			d.pipes = append(d.pipes, PipeDetail{Ino: p.Ino, Size: p.Size, Queued: len(p.Data)})
		}
	case RecSocket:
		var s *Socket
		if s, err = r.ReadSocket(rec); err == nil {
			d.sockets = append(d.sockets, socketDetail(s))
		}
	case RecFileData:
		var f *FileData
		if f, err = r.ReadFileData(rec); err == nil {
			d.files = append(d.files, fileDetail(f))
		}
	case RecSigHand:
		var acts []SigAction
		if acts, err = r.ReadSigHand(rec); err == nil {
			d.signals().Actions = sigActionDetails(acts)
		}
	case RecSigState:
		var s *SigState
		if s, err = r.ReadSigState(rec); err == nil {
			d.signals().setState(s)
		}
	case RecSigPending:
		var ps []PendingSignal
		if ps, err = r.ReadSigPending(rec); err == nil {
			d.signals().Pending = pendingDetails(ps)
		}
	case RecITimers:
		var t *[3]ITimer
		if t, err = r.ReadITimers(rec); err == nil {
			d.signals().Timers = timerDetails(t)
		}
	case RecCreds:
		var c *Creds
		if c, err = r.ReadCreds(rec); err == nil {
			d.Creds = credsDetail(c)
		}
	case RecThreadAttr:
		var a *ThreadAttr
		if a, err = r.ReadThreadAttr(rec); err == nil {
			d.Sched = schedDetail(a)
		}
	case RecRSeq:
		var s *RSeq
		if s, err = r.ReadRSeq(rec); err == nil {
			d.RSeq = &RSeqDetail{Area: Hex(s.Pointer), Size: s.Size, Signature: Hex(s.Signature), Flags: s.Flags}
		}
	case RecThread:
		var t *Thread
		if t, err = r.ReadThread(rec); err == nil {
			d.Thread = &ThreadDetail{ClearChildTid: Hex(t.ClearChildTid), RobustList: Hex(t.RobustList), RobustListLen: t.RobustLen}
		}
	case RecRegs:
		var g *Regs
		if g, err = r.ReadRegs(rec); err == nil {
			d.Regs = regsDetail(g)
		}
	default:
		d.Unknown = append(d.Unknown, UnknownRecord{Type: rec.Type, Bytes: rec.Size})
	}
	return err
}

func (d *TaskDetail) signals() *SignalDetail {
	if d.Signals == nil {
		d.Signals = &SignalDetail{}
	}
	return d.Signals
}

func processDetail(p *Process) *ProcessDetail {
	return &ProcessDetail{Cwd: p.Cwd, Root: p.Root, Umask: octal(p.Umask), Personality: Hex(p.Personality),
		Nice: p.Nice, OOMScoreAdj: p.OOMScoreAdj, NoNewPrivs: p.NoNewPrivs, Subreaper: p.Subreaper}
}

// Resources and their limits as the kernel sets them for init
// (INIT_RLIMITS). Those it sizes from memory are judged apart (see
// isDefaultRLimit).
var defaultRLimits = [NumRLimits][2]uint64{
	{RLimInfinity, RLimInfinity}, // CPU
	{RLimInfinity, RLimInfinity}, // FSIZE
	{RLimInfinity, RLimInfinity}, // DATA
	{8 << 20, RLimInfinity},      // STACK
	{0, RLimInfinity},            // CORE
	{RLimInfinity, RLimInfinity}, // RSS
	{0, 0},                       // NPROC: max_threads/2, soft == hard
	{1024, 4096},                 // NOFILE
	{8 << 20, 8 << 20},           // MEMLOCK (64 KiB before Linux 5.16)
	{RLimInfinity, RLimInfinity}, // AS
	{RLimInfinity, RLimInfinity}, // LOCKS
	{0, 0},                       // SIGPENDING: as NPROC
	{819200, 819200},             // MSGQUEUE
	{0, 0},                       // NICE
	{0, 0},                       // RTPRIO
	{RLimInfinity, RLimInfinity}, // RTTIME
}

// isDefaultRLimit reports whether limit l of resource res is the kernel's
// own (see RLimitDetail).
func isDefaultRLimit(res int, l RLimit) bool {
	const memlockOld = 64 << 10
	switch res {
	case 6, 11: // NPROC, SIGPENDING
		return l.Cur == l.Max
	case 8: // MEMLOCK
		if l.Cur == memlockOld && l.Max == memlockOld {
			return true
		}
	}
	return res < NumRLimits && l.Cur == defaultRLimits[res][0] && l.Max == defaultRLimits[res][1]
}

func rlimitDetails(l []RLimit) []RLimitDetail {
	out := make([]RLimitDetail, len(l))
	for i, v := range l {
		out[i] = RLimitDetail{Resource: RLimitName(i), Soft: Limit(v.Cur), Hard: Limit(v.Max), Default: isDefaultRLimit(i, v)}
	}
	return out
}

var specialNames = [...]string{SpecialHeap: "heap", SpecialStack: "stack", SpecialVDSO: "vdso",
	SpecialVVar: "vvar", SpecialVVarVclock: "vvar_vclock", SpecialVSyscall: "vsyscall"}

// protText writes protections as /proc/<pid>/maps does: "r-x".
func protText(p uint32) string {
	b := []byte("---")
	for i, c := range "rwx" {
		if p&(1<<i) != 0 {
			b[i] = byte(c)
		}
	}
	return string(b)
}

// setMemory takes the MM record. Pages counted before it (a PAGES record
// ahead of its MM, which ckptfs never writes) stay outside every mapping.
func (d *TaskDetail) setMemory(m *MM) {
	md := &MemoryDetail{Exe: m.Exe, StartCode: Hex(m.StartCode), EndCode: Hex(m.EndCode),
		StartData: Hex(m.StartData), EndData: Hex(m.EndData), StartBrk: Hex(m.StartBrk), Brk: Hex(m.Brk),
		StartStack: Hex(m.StartStack), ArgStart: Hex(m.ArgStart), ArgEnd: Hex(m.ArgEnd),
		EnvStart: Hex(m.EnvStart), EnvEnd: Hex(m.EnvEnd), AuxvWords: len(m.Auxv),
		Mappings: make([]MappingDetail, len(m.VMAs))}
	if old := d.Memory; old != nil {
		md.Pages, md.Bytes, md.PagesOutside = old.Pages, old.Bytes, old.Pages
	}
	for i, v := range m.VMAs {
		md.Mappings[i] = MappingDetail{Start: Hex(v.Start), End: Hex(v.End), Size: v.End - v.Start,
			Prot: protText(v.Prot), Shared: v.Flags&VMAShared != 0, Anon: v.Flags&VMAAnon != 0,
			GrowsDown: v.Flags&VMAGrowsDown != 0, Path: v.Path, Offset: v.Pgoff}
		if int(v.Special) < len(specialNames) {
			md.Mappings[i].Special = specialNames[v.Special]
		}
		if v.Flags&VMAAnon == 0 {
			md.Mappings[i].Dev, md.Mappings[i].Ino = devText(v.Dev), v.Ino
		}
		md.Mappings[i].Identity = fileIDDetail(v.ID)
	}
	d.Memory = md
}

// find returns the index of the mapping holding addr, or -1.
func (m *MemoryDetail) find(addr uint64) int {
	i, _ := slices.BinarySearchFunc(m.Mappings, addr, func(v MappingDetail, a uint64) int {
		if uint64(v.End) <= a {
			return -1
		}
		if uint64(v.Start) > a {
			return 1
		}
		return 0
	})
	if i < len(m.Mappings) && uint64(m.Mappings[i].Start) <= addr && addr < uint64(m.Mappings[i].End) {
		return i
	}
	return -1
}

// countPages counts n pages of size ps at addr into the mappings that hold
// them.
func (d *TaskDetail) countPages(addr uint64, n int64, ps uint64) {
	if d.Memory == nil {
		d.Memory = &MemoryDetail{}
	}
	m := d.Memory
	m.Pages += n
	m.Bytes += n * int64(ps)
	end := addr + uint64(n)*ps
	if end < addr {
		end = ^uint64(0) // a run at the top of the address space
	}
	var counted int64
	i, _ := slices.BinarySearchFunc(m.Mappings, addr, func(v MappingDetail, a uint64) int {
		if uint64(v.End) <= a {
			return -1
		}
		return 1
	})
	for ; i < len(m.Mappings) && uint64(m.Mappings[i].Start) < end; i++ {
		v := &m.Mappings[i]
		lo, hi := max(addr, uint64(v.Start)), min(end, uint64(v.End))
		k := min(int64((hi-lo)/ps), n-counted)
		v.Pages += k
		v.Bytes += k * int64(ps)
		counted += k
	}
	m.PagesOutside += n - counted
}

// fileKinds names the FD kinds.
var fileKinds = [...]string{FileRegular: "regular", FileDevice: "device", FilePipe: "pipe",
	FileEventfd: "eventfd", FileEpoll: "epoll", FileReplaced: "replaced", FileSocket: "socket",
	FileDeleted: "deleted", FileFifo: "fifo"}

func fdDetails(fds []FD) []FDDetail {
	out := make([]FDDetail, len(fds))
	for i, f := range fds {
		fd := FDDetail{FD: f.Num, Kind: fileKinds[f.Kind], Path: f.Path, Flags: openFlagsNames(f.Flags),
			Pos: f.Pos, Ino: f.Ino, Identity: fileIDDetail(f.ID), flags: f.Flags}
		switch f.Kind {
		case FileRegular:
			if f.Flags&oDirectory != 0 {
				fd.Kind = "directory"
			}
		case FilePipe, FileFifo:
			fd.ref = objRef{kind: objPipe, ino: f.Ino}
		case FileSocket:
			fd.ref = objRef{kind: objSocket, ino: f.Ino}
		case FileDeleted:
			fd.ref = objRef{kind: objFile, dev: f.Dev, ino: f.Ino}
		case FileEventfd:
			fd.Eventfd = &EventfdDetail{Count: f.Extra[0], Semaphore: f.Extra[1] != 0}
		case FileReplaced:
			fd.Replaced = &ReplacedDetail{Was: externalKinds[f.ExternalKind()], Foreground: f.Foreground()}
		case FileEpoll:
			fd.Epoll = make([]EpollWatch, 0, len(f.Extra)/3)
			for j := 0; j+2 < len(f.Extra); j += 3 {
				fd.Epoll = append(fd.Epoll, EpollWatch{FD: f.Extra[j], Events: flagNames(f.Extra[j+1], epollEventNames), Data: Hex(f.Extra[j+2])})
			}
		}
		if f.Dev != 0 {
			fd.Dev = devText(f.Dev)
		}
		out[i] = fd
	}
	slices.SortStableFunc(out, func(a, b FDDetail) int { return int(a.FD) - int(b.FD) })
	return out
}

// fileIDDetail reports a file's identity; nil for none.
func fileIDDetail(id *FileID) *FileIDDetail {
	if id == nil {
		return nil
	}
	return &FileIDDetail{Size: id.Size, Mtime: id.Mtime().UTC().Format(time.RFC3339Nano), BuildID: hex.EncodeToString(id.BuildID)}
}

var sockTypes = map[uint32]string{SockStream: "stream", SockDgram: "dgram", SockSeqpacket: "seqpacket"}

func socketDetail(s *Socket) SocketDetail {
	sd := SocketDetail{Ino: s.Ino, Peer: s.Peer, Type: sockTypes[s.Type], SndBuf: s.SndBuf, RcvBuf: s.RcvBuf,
		PeekOff: s.PeekOff, Messages: len(s.Queue)}
	sd.Shutdown = [4]string{"", "read", "write", "read-write"}[s.Shutdown&3]
	for _, m := range s.Queue {
		sd.Queued += len(m)
	}
	return sd
}

var sealNames = []flagName{{1, "F_SEAL_SEAL"}, {2, "F_SEAL_SHRINK"}, {4, "F_SEAL_GROW"}, {8, "F_SEAL_WRITE"},
	{0x10, "F_SEAL_FUTURE_WRITE"}, {0x20, "F_SEAL_EXEC"}}

func fileDetail(f *FileData) FileDetail {
	fd := FileDetail{Dev: devText(f.Dev), Ino: f.Ino, Name: f.Name, Memfd: f.Memfd, Mode: octal(f.Mode),
		Uid: f.Uid, Gid: f.Gid, Size: f.Size, Carried: len(f.Data), devNr: f.Dev}
	if f.Seals != 0 {
		fd.Seals = flagNames(uint64(f.Seals), sealNames)
	}
	return fd
}

func sigActionDetails(acts []SigAction) []SigActionDetail {
	out := make([]SigActionDetail, len(acts))
	for i, a := range acts {
		h := Hex(a.Handler).String()
		switch a.Handler {
		case sigDefault:
			h = "default"
		case sigIgnore:
			h = "ignore"
		}
		out[i] = SigActionDetail{Signo: a.Signo, Name: SignalName(a.Signo), Handler: h,
			Flags: flagNames(a.Flags, saFlagNames), Restorer: Hex(a.Restorer), Mask: sigSetNames(a.Mask)}
	}
	slices.SortStableFunc(out, func(a, b SigActionDetail) int { return int(a.Signo) - int(b.Signo) })
	return out
}

func (s *SignalDetail) setState(st *SigState) {
	s.blocked, s.hasMask = st.Blocked, true
	if len(sigSetNames(st.Blocked)) > 0 {
		s.Blocked = sigSetNames(st.Blocked)
	}
	s.AltStack = nil
	if st.AltFlags&ssDisable == 0 {
		s.AltStack = &AltStackDetail{SP: Hex(st.AltSP), Size: st.AltSize, Flags: flagNames(uint64(st.AltFlags), ssFlagNames)}
	}
}

func pendingDetails(ps []PendingSignal) []PendingDetail {
	out := make([]PendingDetail, len(ps))
	for i, p := range ps {
		signo, code := le.Uint32(p.Info[0:]), int32(le.Uint32(p.Info[8:]))
		pd := PendingDetail{Signo: signo, Name: SignalName(signo), Shared: p.Shared, Code: siCodeName(code)}
		switch code {
		case 0, -1, -3, -6: // SI_USER, SI_QUEUE, SI_MESGQ, SI_TKILL: si_pid and si_uid say who sent it
			pid, uid := int32(le.Uint32(p.Info[16:])), le.Uint32(p.Info[20:])
			pd.SenderPid, pd.SenderUid = &pid, &uid
		}
		out[i] = pd
	}
	return out
}

var timerNames = [3]string{"real", "virtual", "prof"}

func timerDetails(t *[3]ITimer) []TimerDetail {
	out := make([]TimerDetail, 3)
	for i, it := range t {
		out[i] = TimerDetail{Which: timerNames[i], ValueUs: it.Value, IntervalUs: it.Interval}
	}
	return out
}

func credsDetail(c *Creds) *CredsDetail {
	ids := func(v [4]uint32) IDs { return IDs{v[0], v[1], v[2], v[3]} }
	groups := c.Groups
	if groups == nil {
		groups = []uint32{}
	}
	return &CredsDetail{Uid: ids(c.Uid), Gid: ids(c.Gid), Groups: groups,
		CapInheritable: Hex(c.CapInh), CapPermitted: Hex(c.CapPrm), CapEffective: Hex(c.CapEff),
		CapBounding: Hex(c.CapBnd), CapAmbient: Hex(c.CapAmb), CapEffectiveNames: capSetNames(c.CapEff)}
}

func schedDetail(a *ThreadAttr) *SchedDetail {
	s := &SchedDetail{Policy: PolicyName(a.Policy), ResetOnFork: a.ResetOnFork, RTPriority: a.Priority, Nice: a.Nice}
	if a.PDeathSig != 0 {
		s.PDeathSig = SignalName(a.PDeathSig)
	}
	return s
}

func regsDetail(g *Regs) *RegsDetail {
	rd := &RegsDetail{XSaveBytes: len(g.XSave)}
	for i, p := range []*Hex{&rd.R15, &rd.R14, &rd.R13, &rd.R12, &rd.RBP, &rd.RBX, &rd.R11, &rd.R10, &rd.R9,
		&rd.R8, &rd.RAX, &rd.RCX, &rd.RDX, &rd.RSI, &rd.RDI, &rd.OrigRAX, &rd.RIP, &rd.CS, &rd.EFlags, &rd.RSP,
		&rd.SS, &rd.FSBase, &rd.GSBase, &rd.DS, &rd.ES, &rd.FS, &rd.GS} {
		*p = Hex(g.GP[i])
	}
	if nr := g.GP[regOrigRAX]; int64(nr) != -1 {
		ret := int64(g.GP[regRAX])
		rd.Syscall = &SyscallDetail{Nr: nr, Name: SyscallName(nr), Return: ret, Errno: errnoName(ret)}
	}
	return rd
}

// accessText names the access mode of open flags for a Holder.
func accessText(flags uint32) string {
	switch flags & 3 {
	case 1:
		return "write"
	case 2:
		return "read-write"
	}
	return "read"
}

// holderText is a Holder for people: "812:4", or "812/1:4" in a nested
// namespace.
func holderText(h Holder) string {
	nums := make([]string, len(h.Pid))
	for i, n := range h.Pid {
		nums[i] = strconv.Itoa(int(n))
	}
	return strings.Join(nums, "/") + ":" + strconv.FormatUint(uint64(h.FD), 10)
}
