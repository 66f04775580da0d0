package procfs

import "os"

// OpenMem opens /proc/<pid>/mem, the memory of a process the caller may
// ptrace, with flag (os.O_RDONLY, os.O_RDWR...). Writes go through page
// protections (the kernel writes with FOLL_FORCE).
func OpenMem(pid int, flag int) (*os.File, error) {
	return os.OpenFile(pidDir(pid)+"/mem", flag, 0)
}
