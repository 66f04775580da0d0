package image

// The per-task detail of `ckptfs inspect`: what the records after each
// TASK record hold, decoded for people and for jq. These types are the
// JSON contract: their field tags are the keys `inspect --json` prints in
// each task's entry of "tasks", beside the tree's keys (see WriteJSON).
// Lists are sorted (descriptors by number, mappings by address, signals
// by number); addresses, registers and masks are "0x..." strings (Hex);
// sizes and counts are numbers of bytes or pages.

// TaskDetail is what the per-task records of one task hold. A key is left
// out when the image has no record of it for the task: a thread carries
// only its own state (signals' blocked, altstack and pending, creds,
// sched, rseq, futex, regs), its process's is in its leader's entry; a
// zombie has no record at all.
type TaskDetail struct {
	Process *ProcessDetail `json:"process,omitempty"` // PROCESS
	RLimits []RLimitDetail `json:"rlimits,omitempty"` // RLIMITS, every resource the record holds
	Memory  *MemoryDetail  `json:"memory,omitempty"`  // MM, with the pages of PAGES counted in
	FDs     []FDDetail     `json:"fds,omitempty"`     // FILES, by descriptor number
	Signals *SignalDetail  `json:"signals,omitempty"` // SIGHAND, SIGSTATE, SIGPENDING, ITIMERS
	Creds   *CredsDetail   `json:"creds,omitempty"`   // CREDS
	Sched   *SchedDetail   `json:"sched,omitempty"`   // THREADATTR
	RSeq    *RSeqDetail    `json:"rseq,omitempty"`    // RSEQ
	Thread  *ThreadDetail  `json:"futex,omitempty"`   // THREAD: the futex addresses of thread libraries
	Regs    *RegsDetail    `json:"regs,omitempty"`    // REGS
	// Unknown lists the records of types this program does not know
	// (written by a newer one), which it skipped.
	Unknown []UnknownRecord `json:"unknown_records,omitempty"`

	records int // per-task records read
	// The shared objects whose records this task carries (they come
	// before the FILES record of the first process holding them).
	pipes   []PipeDetail
	sockets []SocketDetail
	files   []FileDetail
}

// ProcessDetail is the PROCESS record: what a process keeps beside its
// memory and files.
type ProcessDetail struct {
	Cwd         string `json:"cwd"`
	Root        string `json:"root"`
	Umask       string `json:"umask"` // octal, "0022"
	Personality Hex    `json:"personality"`
	Nice        int32  `json:"nice"` // the leader's; every thread's own is in its sched
	OOMScoreAdj int32  `json:"oom_score_adj"`
	NoNewPrivs  bool   `json:"no_new_privs"`
	Subreaper   bool   `json:"child_subreaper"`
}

// RLimitDetail is one resource limit of the RLIMITS record. Default says
// whether it is what the kernel gives init (RLIMIT_NPROC and
// RLIMIT_SIGPENDING, which the kernel sizes from memory, count as default
// when soft equals hard); the text report shows only the others.
type RLimitDetail struct {
	Resource string `json:"resource"` // "RLIMIT_NOFILE"
	Soft     Limit  `json:"soft"`     // a number, or "unlimited"
	Hard     Limit  `json:"hard"`
	Default  bool   `json:"default"`
}

// MemoryDetail is the MM record of a process, and how much of its memory
// the image holds: Pages counts the pages of its PAGES records, Bytes
// their size; PagesOutside those that fall in no mapping (none, in an
// image ckptfs wrote).
type MemoryDetail struct {
	Exe          string          `json:"exe"`
	StartCode    Hex             `json:"start_code"`
	EndCode      Hex             `json:"end_code"`
	StartData    Hex             `json:"start_data"`
	EndData      Hex             `json:"end_data"`
	StartBrk     Hex             `json:"start_brk"`
	Brk          Hex             `json:"brk"`
	StartStack   Hex             `json:"start_stack"`
	ArgStart     Hex             `json:"arg_start"`
	ArgEnd       Hex             `json:"arg_end"`
	EnvStart     Hex             `json:"env_start"`
	EnvEnd       Hex             `json:"env_end"`
	AuxvWords    int             `json:"auxv_words"`
	Mappings     []MappingDetail `json:"mappings"` // by address
	Pages        int64           `json:"pages"`
	Bytes        int64           `json:"bytes"`
	PagesOutside int64           `json:"pages_outside,omitempty"`
}

// MappingDetail is one mapping of a process and the pages of it the image
// holds (the private pages the process wrote or the kernel gave it; a
// file's clean pages are the file's and are not in the image).
type MappingDetail struct {
	Start     Hex    `json:"start"`
	End       Hex    `json:"end"`
	Size      uint64 `json:"size"` // bytes, End-Start
	Prot      string `json:"prot"` // "rwx" with "-" for what is missing: "r-x"
	Shared    bool   `json:"shared"`
	Anon      bool   `json:"anon"`
	GrowsDown bool   `json:"grows_down,omitempty"`
	// Special names a mapping the kernel makes: "heap", "stack", "vdso",
	// "vvar", "vvar_vclock", "vsyscall".
	Special string `json:"special,omitempty"`
	Path    string `json:"path,omitempty"` // the backing file, or the name /proc/<pid>/maps shows
	Offset  uint64 `json:"offset"`         // into the file, bytes
	Dev     string `json:"dev,omitempty"`  // the backing file's device, "fd:01"
	Ino     uint64 `json:"ino,omitempty"`  // and inode
	// Identity tells the backing file's contents, where the image
	// records it (format version 3 on).
	Identity *FileIDDetail `json:"identity,omitempty"`
	Pages    int64         `json:"pages"` // pages of it in the image
	Bytes    int64         `json:"bytes"`
}

// FileIDDetail tells the contents of a file named by path (image.FileID):
// with device and inode, what restart checks to find the checkpointed file
// again, on this machine or another.
type FileIDDetail struct {
	Size    uint64 `json:"size"`               // bytes
	Mtime   string `json:"mtime"`              // RFC 3339, UTC, to the nanosecond
	BuildID string `json:"build_id,omitempty"` // hex: an ELF file's GNU build-id
}

// FDDetail is one descriptor of the FILES record.
type FDDetail struct {
	FD uint32 `json:"fd"`
	// Kind: "regular", "directory" (a regular one opened with
	// O_DIRECTORY), "device", "pipe", "fifo", "socket", "eventfd",
	// "epoll", "deleted" (an unlinked file), "memfd", or "replaced" (it
	// led outside the tree and restart puts /dev/null in its place; Path
	// says what it was).
	Kind  string   `json:"kind"`
	Path  string   `json:"path,omitempty"`
	Flags []string `json:"flags"` // open flags, the access mode first: ["O_WRONLY", "O_APPEND"]
	Pos   uint64   `json:"pos"`
	Dev   string   `json:"dev,omitempty"`
	Ino   uint64   `json:"ino,omitempty"`
	// Identity tells a regular file's contents, where the image records
	// it (format version 3 on).
	Identity *FileIDDetail `json:"identity,omitempty"`
	// What the descriptor refers to, where the image tells: a pipe's or
	// named pipe's PIPE record, one end of a socket pair, an unlinked
	// file's FILEDATA, an eventfd's counter, an epoll instance's watches.
	Pipe    *PipeDetail    `json:"pipe,omitempty"`
	Socket  *SocketDetail  `json:"socket,omitempty"`
	File    *FileDetail    `json:"file,omitempty"`
	Eventfd *EventfdDetail `json:"eventfd,omitempty"`
	Epoll   []EpollWatch   `json:"epoll,omitempty"`
	// Replaced says what a "replaced" descriptor led to.
	Replaced *ReplacedDetail `json:"replaced,omitempty"`
	// SharedWith lists the other descriptors of the tree on the same
	// pipe, socket or unlinked file; PeerHeldBy, for a socket, those on
	// the other end of its pair.
	SharedWith []Holder `json:"shared_with,omitempty"`
	PeerHeldBy []Holder `json:"peer_held_by,omitempty"`

	flags uint32
	ref   objRef // the object it refers to, for linking
}

// Holder is a descriptor of a process of the tree: the process's pid (its
// numbers from the root's namespace down, as "pid" of "tasks") and the
// descriptor's number and access mode ("read", "write", "read-write").
type Holder struct {
	Pid    []int32 `json:"pid"`
	FD     uint32  `json:"fd"`
	Access string  `json:"access"`
}

// PipeDetail is a PIPE record: a pipe or named pipe of the tree, its
// buffer size and the bytes queued in it.
type PipeDetail struct {
	Ino    uint64 `json:"ino"`
	Size   uint32 `json:"size"`
	Queued int    `json:"queued"`
}

// SocketDetail is a SOCKET record: one end of a unix socket pair, and what
// waits in its receive queue.
type SocketDetail struct {
	Ino      uint64 `json:"ino"`
	Peer     uint64 `json:"peer"`
	Type     string `json:"type"`     // "stream", "dgram", "seqpacket"
	Shutdown string `json:"shutdown"` // "", "read", "write", "read-write": the directions shut down
	SndBuf   uint32 `json:"sndbuf"`
	RcvBuf   uint32 `json:"rcvbuf"`
	PeekOff  int32  `json:"peek_off"` // -1 when off
	Messages int    `json:"messages"` // queued messages (a stream's bytes are one)
	Queued   int    `json:"queued"`   // queued bytes
}

// FileDetail is a FILEDATA record: a file the tree holds open that no path
// names (deleted, or a memfd), whose contents the image carries.
type FileDetail struct {
	Dev     string   `json:"dev"`
	Ino     uint64   `json:"ino"`
	Name    string   `json:"name"` // a memfd's name, else the path it had
	Memfd   bool     `json:"memfd"`
	Mode    string   `json:"mode"` // octal permission bits, "0640"
	Uid     uint32   `json:"uid"`
	Gid     uint32   `json:"gid"`
	Seals   []string `json:"seals,omitempty"` // a memfd's: "F_SEAL_SHRINK", ...
	Size    uint64   `json:"size"`            // the file's size
	Carried int      `json:"carried"`         // bytes of it in the image (less when it ends in a hole)

	devNr uint64
}

// EventfdDetail is an eventfd's counter and mode.
type EventfdDetail struct {
	Count     uint64 `json:"count"`
	Semaphore bool   `json:"semaphore"`
}

// ReplacedDetail is what a descriptor that led outside the tree was:
// "terminal", "pipe", "fifo", "socket" (or "" if the image does not say),
// and for a terminal whether the process's group had it in the
// foreground. Restart gives it /dev/null, or the restorer's terminal to a
// terminal of a shell job (ckptfs restore --shell-job).
type ReplacedDetail struct {
	Was        string `json:"was"`
	Foreground bool   `json:"foreground,omitempty"`
}

var externalKinds = map[uint64]string{ExternalTerminal: "terminal", ExternalPipe: "pipe", ExternalFifo: "fifo",
	ExternalSocket: "socket"}

// EpollWatch is one watch of an epoll instance.
type EpollWatch struct {
	FD     uint64   `json:"fd"`
	Events []string `json:"events"` // "EPOLLIN", "EPOLLET", ...
	Data   Hex      `json:"data"`
}

// SignalDetail is a task's signal state. Actions and Timers are its
// process's (in the leader's entry only); Blocked, AltStack and Pending
// are the thread's own, Pending with the process's shared queue in the
// leader's entry.
type SignalDetail struct {
	Actions  []SigActionDetail `json:"actions,omitempty"` // the signals not at their default disposition
	Blocked  []string          `json:"blocked,omitempty"` // signal names
	AltStack *AltStackDetail   `json:"altstack,omitempty"`
	Pending  []PendingDetail   `json:"pending,omitempty"`
	Timers   []TimerDetail     `json:"timers,omitempty"` // real, virtual, prof

	blocked uint64
	hasMask bool // a SIGSTATE record was read
}

// SigActionDetail is a signal's disposition.
type SigActionDetail struct {
	Signo    uint32   `json:"signo"`
	Name     string   `json:"name"`    // "SIGUSR1"
	Handler  string   `json:"handler"` // "0x401136", "ignore" or "default"
	Flags    []string `json:"flags"`   // "SA_RESTART", "SA_ONSTACK", ...
	Restorer Hex      `json:"restorer"`
	Mask     []string `json:"mask"` // signals blocked while the handler runs
}

// AltStackDetail is the thread's alternate signal stack (sigaltstack); it
// is left out when disabled.
type AltStackDetail struct {
	SP    Hex      `json:"sp"`
	Size  uint64   `json:"size"`
	Flags []string `json:"flags"` // "SS_ONSTACK" (running on it), "SS_AUTODISARM"
}

// PendingDetail is a queued signal. SenderPid and SenderUid are given for
// a signal a process sent (kill, tgkill, sigqueue), as the checkpointing
// kernel numbered them.
type PendingDetail struct {
	Signo     uint32  `json:"signo"`
	Name      string  `json:"name"`
	Shared    bool    `json:"shared"` // queued to the whole process
	Code      string  `json:"code"`   // si_code: "SI_USER", "SI_TKILL", "SI_KERNEL", ... or its number
	SenderPid *int32  `json:"sender_pid,omitempty"`
	SenderUid *uint32 `json:"sender_uid,omitempty"`
}

// TimerDetail is an interval timer: what is left of its period and its
// interval, in microseconds; 0 and 0 when disarmed.
type TimerDetail struct {
	Which      string `json:"which"` // "real", "virtual", "prof"
	ValueUs    uint64 `json:"value_us"`
	IntervalUs uint64 `json:"interval_us"`
}

// CredsDetail is the CREDS record.
type CredsDetail struct {
	Uid               IDs      `json:"uid"`
	Gid               IDs      `json:"gid"`
	Groups            []uint32 `json:"groups"`
	CapInheritable    Hex      `json:"cap_inheritable"`
	CapPermitted      Hex      `json:"cap_permitted"`
	CapEffective      Hex      `json:"cap_effective"`
	CapBounding       Hex      `json:"cap_bounding"`
	CapAmbient        Hex      `json:"cap_ambient"`
	CapEffectiveNames []string `json:"cap_effective_names"` // "CAP_CHOWN", ...
}

// IDs are a task's real, effective, saved and filesystem user or group
// ids.
type IDs struct {
	Real      uint32 `json:"real"`
	Effective uint32 `json:"effective"`
	Saved     uint32 `json:"saved"`
	FS        uint32 `json:"fs"`
}

// SchedDetail is the THREADATTR record: the thread's scheduling and its
// parent-death signal.
type SchedDetail struct {
	Policy      string `json:"policy"` // "SCHED_OTHER", "SCHED_FIFO", ...
	ResetOnFork bool   `json:"reset_on_fork"`
	RTPriority  uint32 `json:"rt_priority"`
	Nice        int32  `json:"nice"`
	PDeathSig   string `json:"pdeathsig,omitempty"` // signal name; left out when none
}

// RSeqDetail is the thread's restartable-sequences registration.
type RSeqDetail struct {
	Area      Hex    `json:"area"`
	Size      uint32 `json:"size"`
	Signature Hex    `json:"signature"`
	Flags     uint32 `json:"flags"`
}

// ThreadDetail is the THREAD record: what thread libraries register with
// the kernel.
type ThreadDetail struct {
	ClearChildTid Hex    `json:"clear_child_tid"`
	RobustList    Hex    `json:"robust_list"`
	RobustListLen uint64 `json:"robust_list_len"`
}

// RegsDetail is the REGS record: every general register (struct
// user_regs_struct), the size of the FPU state, and the system call the
// thread was stopped in, if any.
type RegsDetail struct {
	R15        Hex `json:"r15"`
	R14        Hex `json:"r14"`
	R13        Hex `json:"r13"`
	R12        Hex `json:"r12"`
	RBP        Hex `json:"rbp"`
	RBX        Hex `json:"rbx"`
	R11        Hex `json:"r11"`
	R10        Hex `json:"r10"`
	R9         Hex `json:"r9"`
	R8         Hex `json:"r8"`
	RAX        Hex `json:"rax"`
	RCX        Hex `json:"rcx"`
	RDX        Hex `json:"rdx"`
	RSI        Hex `json:"rsi"`
	RDI        Hex `json:"rdi"`
	OrigRAX    Hex `json:"orig_rax"`
	RIP        Hex `json:"rip"`
	CS         Hex `json:"cs"`
	EFlags     Hex `json:"eflags"`
	RSP        Hex `json:"rsp"`
	SS         Hex `json:"ss"`
	FSBase     Hex `json:"fs_base"`
	GSBase     Hex `json:"gs_base"`
	DS         Hex `json:"ds"`
	ES         Hex `json:"es"`
	FS         Hex `json:"fs"`
	GS         Hex `json:"gs"`
	XSaveBytes int `json:"xsave_bytes"`
	// Syscall is the system call the thread was stopped in (orig_rax is
	// not -1); Return is rax as a signed number, with its errno name when
	// it is one ("ERESTARTSYS": the kernel restarts the call on resume).
	Syscall *SyscallDetail `json:"syscall,omitempty"`
}

// SyscallDetail names the system call a thread was stopped in.
type SyscallDetail struct {
	Nr     uint64 `json:"nr"`
	Name   string `json:"name,omitempty"`
	Return int64  `json:"return"`
	Errno  string `json:"errno,omitempty"`
}

// UnknownRecord is a per-task record this program does not know.
type UnknownRecord struct {
	Type  uint32 `json:"type"`
	Bytes int64  `json:"bytes"`
}
