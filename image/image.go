// Package image holds the ckptfs checkpoint image: its in-memory model and
// its byte format.
//
// The format descends from linux-cr (Oren Laadan's kernel checkpoint/restart).
// An image is one stream of records, readable front to back without seeking:
//
//	HEADER     compatibility facts, refused on mismatch before any work
//	PIDS       the pid namespaces, then every pid object (shared, tagged)
//	TREE       one entry per task, naming its pids by tag
//	TASK ...   per-task state, one group of records per task, in TREE order
//	TAIL       magic and a CRC32C of every byte before it
//
// Every record starts with an 8-byte header, little-endian: type (u32) and
// length (u32, header included). Record types are numbered by subsystem as
// linux-cr did: 1-99 generic, 101+ tree and task, 201+ arch, 301+ files,
// 401+ memory, 601+ signals, 9001 tail.
//
// Shared objects get tags 1, 2, 3... in order of first encounter, one tag
// space per kind of object, and a tag is always defined before it is used.
// Nothing in this package touches the operating system.
package image

import (
	"fmt"
	"strings"
)

// Record types. The numbers are part of the format: never renumber.
const (
	RecHeader = 1 // Header
	RecPids   = 101
	RecTree   = 102
	RecTask   = 103
	RecTail   = 9001
)

// Format constants.
const (
	Magic       = "CKPTFS\x00\x01" // first 8 bytes of the HEADER payload
	TailMagic   = "CKPTEND\x00"    // first 8 bytes of the TAIL payload
	Version     = 3                // 3: MM and FILES entries carry a FileID; 2: TREE entries carry a flags word (TaskFlags)
	MinVersion  = 2                // the oldest version this program reads: 2's records have no FileID
	HeaderSize  = 8                // bytes of a record header
	ArchX86_64  = 0xc000003e
	MaxPidLevel = 32 // MAX_PID_NS_LEVEL: the kernel's nesting limit
)

// Mode says how the tree relates to the pid namespace it was taken in.
type Mode uint32

const (
	// ModeContainer: the root task is the init of its pid namespace and
	// every pid the tree refers to lies inside that namespace.
	ModeContainer Mode = 1
	// ModeSubtree: any process; pgids and sids from above the tree are
	// recorded as TagAncestor or TagRoot.
	ModeSubtree Mode = 2
)

func (m Mode) String() string {
	switch m {
	case ModeContainer:
		return "container"
	case ModeSubtree:
		return "subtree"
	}
	return "unknown"
}

// Tag names a shared object of one kind (pid object, pid namespace) within an
// image. Tags of one kind count from 1 in order of first encounter.
type Tag uint32

// Special tag values of a task's pgid and sid (and of the root task's parent).
const (
	// TagAncestor: the pid lives in an ancestor pid namespace of the root's,
	// so it has no number in the image (linux-cr's 0).
	TagAncestor Tag = 0
	// TagRoot: the same process group or session as the root task, inherited
	// from above the tree (linux-cr's CKPT_PID_ROOT). Subtree mode only.
	TagRoot Tag = 0xffffffff
)

// Header holds the compatibility facts of an image, written first so that a
// mismatch is refused before any work starts.
type Header struct {
	Version  uint32
	Arch     uint32 // AUDIT_ARCH_* of the tasks
	PageSize uint32
	Mode     Mode
	// XSaveSize and XSaveFeatures describe the FPU state layout (the XCR0
	// bits in use): registers saved under one layout cannot be loaded on a
	// CPU without those features.
	XSaveSize     uint32
	XSaveFeatures uint64
	Time          int64  // checkpoint time, Unix nanoseconds
	Kernel        string // uname release of the checkpointing kernel
}

// PidNS is a pid namespace. Namespace tag 1 is the root task's namespace; a
// namespace's level is its parent's plus one, so sibling namespaces — a tree
// of namespaces, not only a chain — are described exactly.
type PidNS struct {
	Parent Tag // 0 for tag 1, the root's namespace
}

// Pid is a pid object: one struct pid, with its number at every namespace
// level from the root task's namespace downwards. Levels[0] is the number in
// the root's namespace, Levels[k] the number k levels deeper (the order of
// NSpid in /proc/<pid>/status; clone3's set_tid wants the reverse).
type Pid struct {
	Levels []PidLevel
}

// PidLevel is a pid's number in one namespace.
type PidLevel struct {
	NS Tag   // the namespace, by tag
	Nr int32 // the number in that namespace
}

// Depth is the number of namespace levels below the root's (linux-cr's depth).
func (p Pid) Depth() int { return len(p.Levels) - 1 }

// Pids is the PIDS section.
type Pids struct {
	NS   []PidNS // NS[i] has tag i+1
	Pids []Pid   // Pids[i] has tag i+1
}

// Task is one entry of the TREE section: a task (thread or process) and the
// pid objects it refers to.
type Task struct {
	Pid  Tag // the task's own pid object
	PPid Tag // its parent's pid object; TagAncestor for the root task only
	TGid Tag // its thread group leader; == Pid for a leader
	PGid Tag // may be TagAncestor or TagRoot
	Sid  Tag // may be TagAncestor or TagRoot
	// Depth is the task's namespace depth below the root's; it must equal
	// the depth of its pid object.
	Depth uint32
	// Flags say what a process shares with its parent process. A thread
	// shares everything with its leader and carries none; neither does the
	// root, whose parent is outside the tree.
	Flags TaskFlags
}

// TaskFlags say which of its parent's kernel objects a process shares, as
// clone(2) made it share them: restart must create it the same way, by
// that parent (or by a process sharing the same objects).
type TaskFlags uint32

const (
	// TaskSharesFiles: the process and its parent share one descriptor
	// table (CLONE_FILES): a descriptor one opens the other sees.
	TaskSharesFiles TaskFlags = 1 << 0
	// TaskSharesFS: they share one fs struct (CLONE_FS): working
	// directory, root and umask.
	TaskSharesFS TaskFlags = 1 << 1

	// TaskFlagsKnown are the flags this version defines; others are
	// refused.
	TaskFlagsKnown = TaskSharesFiles | TaskSharesFS
)

// Names lists the flags by name ("files", "fs"), unknown bits as hex.
func (f TaskFlags) Names() []string {
	var out []string
	if f&TaskSharesFiles != 0 {
		out = append(out, "files")
	}
	if f&TaskSharesFS != 0 {
		out = append(out, "fs")
	}
	if u := f &^ TaskFlagsKnown; u != 0 {
		out = append(out, fmt.Sprintf("%#x", uint32(u)))
	}
	return out
}

func (f TaskFlags) String() string {
	if f == 0 {
		return "-"
	}
	return strings.Join(f.Names(), "+")
}

// Tree is the TREE section. Tasks[0] is the root; a parent always comes
// before its children and a thread group leader before its threads.
type Tree struct {
	Tasks []Task
}

// TaskState is the per-task record (RecTask) that opens each task's group of
// records. Later subsystems append their own records after it.
type TaskState struct {
	Pid      Tag    // the task, as in TREE; tasks come in TREE order
	State    byte   // /proc state letter: R S D T t Z ...
	ExitCode int32  // wait status of a zombie, 0 otherwise
	Comm     string // at most 15 bytes (TASK_COMM_LEN-1)
}

// Image is a whole checkpoint held in memory. Large images are streamed with
// Writer and Reader instead.
type Image struct {
	Header Header
	Pids   Pids
	Tree   Tree
	Tasks  []TaskState
}
