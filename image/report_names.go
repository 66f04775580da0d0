package image

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Names of the kernel's numbers, for the reports. They are the x86_64
// values (the only architecture an image may have), written out here
// because this package touches no operating system and must name what an
// image of another machine holds.

// Hex is a number a report shows in hexadecimal: an address, a register,
// a capability set. In JSON it is a string, "0x7f3a2c000000": 64-bit
// values do not fit the doubles jq computes with.
type Hex uint64

func (h Hex) String() string { return "0x" + strconv.FormatUint(uint64(h), 16) }

// MarshalJSON writes the "0x..." string.
func (h Hex) MarshalJSON() ([]byte, error) { return []byte(`"` + h.String() + `"`), nil }

// UnmarshalJSON reads the "0x..." string back.
func (h *Hex) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("image: hex value %s is not a string", b)
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		return fmt.Errorf("image: hex value %q: %w", s, err)
	}
	*h = Hex(v)
	return nil
}

// Limit is a resource limit. In JSON it is a number, or the string
// "unlimited" for RLIM_INFINITY.
type Limit uint64

func (l Limit) String() string { return FormatRLimit(uint64(l)) }

// MarshalJSON writes the number or "unlimited".
func (l Limit) MarshalJSON() ([]byte, error) {
	if uint64(l) == RLimInfinity {
		return []byte(`"unlimited"`), nil
	}
	return []byte(strconv.FormatUint(uint64(l), 10)), nil
}

// UnmarshalJSON reads a number or "unlimited".
func (l *Limit) UnmarshalJSON(b []byte) error {
	if string(b) == `"unlimited"` {
		*l = Limit(RLimInfinity)
		return nil
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("image: limit %s is neither a number nor \"unlimited\"", b)
	}
	*l = Limit(v)
	return nil
}

// octal formats a mode or umask the way chmod takes it: "0640".
func octal(v uint32) string { return fmt.Sprintf("%04o", v) }

var signalNames = [32]string{"", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS",
	"SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
	"SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ",
	"SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS"}

// SignalName names signal n. Real-time signals are named from the
// kernel's SIGRTMIN (32), not glibc's (34, which reserves two):
// "SIGRTMIN+2" is signal 34, "SIGRTMAX" 64.
func SignalName(n uint32) string {
	switch {
	case n >= 1 && n < 32:
		return signalNames[n]
	case n == 32:
		return "SIGRTMIN"
	case n == MaxSignals:
		return "SIGRTMAX"
	case n > 32 && n < MaxSignals:
		return "SIGRTMIN+" + strconv.Itoa(int(n-32))
	}
	return "signal " + strconv.Itoa(int(n))
}

// sigSetNames names the signals of a mask (bit n-1 is signal n), in signal
// order.
func sigSetNames(mask uint64) []string {
	names := []string{}
	for m := mask; m != 0; m &= m - 1 {
		names = append(names, SignalName(uint32(bits.TrailingZeros64(m))+1))
	}
	return names
}

// sigSetText is a mask for people: "-" for none, the names, or, for a
// mask of more than half the signals, "all but" the others.
func sigSetText(mask uint64) string {
	switch n := bits.OnesCount64(mask); {
	case n == 0:
		return "-"
	case n == 64:
		return "all"
	case n > 32:
		return "all but " + strings.Join(sigSetNames(^mask), " ")
	}
	return strings.Join(sigSetNames(mask), " ")
}

// flagName is one bit (or several bits, all of which must be set) of a
// flags word and its name.
type flagName struct {
	bits uint64
	name string
}

// flagNames names the bits of v found in table, in table order, and what
// is left over as one hex number.
func flagNames(v uint64, table []flagName) []string {
	names := []string{}
	for _, f := range table {
		if v&f.bits == f.bits && f.bits != 0 {
			names = append(names, f.name)
			v &^= f.bits
		}
	}
	if v != 0 {
		names = append(names, "0x"+strconv.FormatUint(v, 16))
	}
	return names
}

// joinFlags is a flags list for people: "A|B", or "-" for none.
func joinFlags(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, "|")
}

// Open flags as /proc/<pid>/fdinfo shows them (octal on x86_64), the
// access mode aside.
var openFlagNames = []flagName{
	{0o100, "O_CREAT"}, {0o200, "O_EXCL"}, {0o400, "O_NOCTTY"}, {0o1000, "O_TRUNC"},
	{0o2000, "O_APPEND"}, {0o4000, "O_NONBLOCK"}, {0o4010000, "O_SYNC"}, {0o10000, "O_DSYNC"},
	{0o20000, "O_ASYNC"}, {0o40000, "O_DIRECT"}, {0o100000, "O_LARGEFILE"}, {0o200000, "O_DIRECTORY"},
	{0o400000, "O_NOFOLLOW"}, {0o1000000, "O_NOATIME"}, {0o2000000, "O_CLOEXEC"}, {0o10000000, "O_PATH"},
	{0o20000000, "__O_TMPFILE"},
}

const oDirectory = 0o200000

// openFlagsNames names open flags, the access mode first:
// ["O_WRONLY", "O_APPEND", "O_CLOEXEC"].
func openFlagsNames(flags uint32) []string {
	var mode string
	switch flags & 3 {
	case 0:
		mode = "O_RDONLY"
	case 1:
		mode = "O_WRONLY"
	case 2:
		mode = "O_RDWR"
	default:
		mode = "O_ACCMODE"
	}
	return append([]string{mode}, flagNames(uint64(flags&^3), openFlagNames)...)
}

// sa_flags of struct kernel_sigaction.
var saFlagNames = []flagName{
	{0x1, "SA_NOCLDSTOP"}, {0x2, "SA_NOCLDWAIT"}, {0x4, "SA_SIGINFO"}, {0x400, "SA_UNSUPPORTED"},
	{0x800, "SA_EXPOSE_TAGBITS"}, {0x04000000, "SA_RESTORER"}, {0x08000000, "SA_ONSTACK"},
	{0x10000000, "SA_RESTART"}, {0x40000000, "SA_NODEFER"}, {0x80000000, "SA_RESETHAND"},
}

// ss_flags of sigaltstack.
const (
	ssOnStack    = 1
	ssDisable    = 2
	ssAutoDisarm = 1 << 31
)

// Handlers that are no address.
const (
	sigDefault = 0 // SIG_DFL
	sigIgnore  = 1 // SIG_IGN
)

var ssFlagNames = []flagName{{ssOnStack, "SS_ONSTACK"}, {ssDisable, "SS_DISABLE"}, {ssAutoDisarm, "SS_AUTODISARM"}}

var epollEventNames = []flagName{
	{0x1, "EPOLLIN"}, {0x2, "EPOLLPRI"}, {0x4, "EPOLLOUT"}, {0x8, "EPOLLERR"}, {0x10, "EPOLLHUP"},
	{0x20, "EPOLLNVAL"}, {0x40, "EPOLLRDNORM"}, {0x80, "EPOLLRDBAND"}, {0x100, "EPOLLWRNORM"},
	{0x200, "EPOLLWRBAND"}, {0x400, "EPOLLMSG"}, {0x2000, "EPOLLRDHUP"}, {1 << 28, "EPOLLEXCLUSIVE"},
	{1 << 29, "EPOLLWAKEUP"}, {1 << 30, "EPOLLONESHOT"}, {1 << 31, "EPOLLET"},
}

// capNames are the capabilities by number, CAP_CHOWN (0) to
// CAP_CHECKPOINT_RESTORE (40).
var capNames = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"}

// allCaps is every capability this package can name.
const allCaps = uint64(1)<<41 - 1

// capSetNames names the capabilities of a set, unknown ones as "cap N".
func capSetNames(set uint64) []string {
	names := []string{}
	for m := set; m != 0; m &= m - 1 {
		n := bits.TrailingZeros64(m)
		if n < len(capNames) {
			names = append(names, capNames[n])
		} else {
			names = append(names, "cap "+strconv.Itoa(n))
		}
	}
	return names
}

// capSetText is a capability set for people: its hex value, and its names
// (or those it lacks, when it holds most) unless it is empty.
func capSetText(set uint64) string {
	s := fmt.Sprintf("%016x", set)
	switch {
	case set == 0:
	case set&allCaps == allCaps:
		s += " (all)"
	case set&^allCaps == 0 && bits.OnesCount64(set) > len(capNames)/2:
		s += " (all but " + strings.Join(capSetNames(allCaps&^set), " ") + ")"
	default:
		s += " (" + strings.Join(capSetNames(set), " ") + ")"
	}
	return s
}

// syscallNames names the x86_64 system calls a stopped task is most often
// found in, and a few more; the others are shown by number.
var syscallNames = map[uint64]string{
	0: "read", 1: "write", 2: "open", 3: "close", 7: "poll", 9: "mmap", 11: "munmap", 13: "rt_sigaction",
	14: "rt_sigprocmask", 16: "ioctl", 17: "pread64", 18: "pwrite64", 19: "readv", 20: "writev", 23: "select",
	24: "sched_yield", 34: "pause", 35: "nanosleep", 39: "getpid", 42: "connect", 43: "accept", 44: "sendto",
	45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 56: "clone", 57: "fork", 58: "vfork", 59: "execve",
	60: "exit", 61: "wait4", 62: "kill", 64: "semget", 65: "semop", 69: "msgsnd", 70: "msgrcv", 72: "fcntl",
	73: "flock", 74: "fsync", 130: "rt_sigsuspend", 128: "rt_sigtimedwait", 200: "tkill", 202: "futex",
	219: "restart_syscall", 230: "clock_nanosleep", 231: "exit_group", 232: "epoll_wait", 234: "tgkill",
	247: "waitid", 257: "openat", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait", 288: "accept4",
	299: "recvmmsg", 307: "sendmmsg", 435: "clone3", 441: "epoll_pwait2",
}

// SyscallName names x86_64 system call nr, or returns "" if this package
// does not know it.
func SyscallName(nr uint64) string { return syscallNames[nr] }

// errnoNames names the errors a system call a task was stopped in may
// return: the kernel's restart codes above all.
var errnoNames = map[int64]string{
	1: "EPERM", 2: "ENOENT", 4: "EINTR", 9: "EBADF", 11: "EAGAIN", 14: "EFAULT", 22: "EINVAL", 38: "ENOSYS",
	110: "ETIMEDOUT", 512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND", 515: "ENOIOCTLCMD",
	516: "ERESTART_RESTARTBLOCK",
}

// errnoName names a negative return value as an errno, "" if it is none
// this package knows.
func errnoName(ret int64) string {
	if ret >= 0 || ret < -4095 {
		return ""
	}
	return errnoNames[-ret]
}

// siCodeName names the si_code of a queued signal.
func siCodeName(code int32) string {
	switch code {
	case 0:
		return "SI_USER"
	case 0x80:
		return "SI_KERNEL"
	case -1:
		return "SI_QUEUE"
	case -2:
		return "SI_TIMER"
	case -3:
		return "SI_MESGQ"
	case -4:
		return "SI_ASYNCIO"
	case -5:
		return "SI_SIGIO"
	case -6:
		return "SI_TKILL"
	}
	return strconv.Itoa(int(code))
}

// Indexes of Regs.GP (struct user_regs_struct, in kernel order).
const (
	regRAX     = 10
	regOrigRAX = 15
	regRIP     = 16
	regRSP     = 19
)

// devText formats a device number (glibc's makedev encoding) as
// /proc/<pid>/maps does: "fd:01", major and minor in hex.
func devText(dev uint64) string {
	major := (dev>>32)&0xfffff000 | (dev>>8)&0xfff
	minor := (dev>>12)&0xffffff00 | dev&0xff
	return fmt.Sprintf("%02x:%02x", major, minor)
}

// sizeText is a byte count for people: "4K", "1.5M", "12G", exact below
// 10 units and rounded to one decimal above.
func sizeText(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return strconv.FormatUint(n, 10)
	}
	v, u := float64(n)/1024, 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d%c", int64(v), units[u])
	}
	return fmt.Sprintf("%.1f%c", v, units[u])
}
