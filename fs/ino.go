package fs

// Inode numbers. A process directory and its files take their numbers from
// the pid and their generation from the process's start time, so a reused
// pid is a new generation of the same inode number, as NFS and backup tools
// expect.
const (
	inoRoot     = 1
	inoRestore  = 2
	inoShellJob = 3
	inoShift    = 3 // pid<<inoShift leaves room for a directory and its files
)

const (
	kindDir = iota
	kindPids
	kindTree
	kindImage
	kindStatus
)

func pidIno(pid, kind int) uint64 { return uint64(pid)<<inoShift | uint64(kind) }
