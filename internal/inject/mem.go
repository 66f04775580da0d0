package inject

import (
	"os"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// ReadMem reads the task's memory at addr through /proc/<pid>/mem.
func ReadMem(tid int, addr uint64, buf []byte) error {
	f, err := procfs.OpenMem(tid, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(buf, int64(addr))
	return err
}

// WriteMem writes buf into the task's memory at addr, whatever the page
// protection (the kernel writes through /proc/<pid>/mem with FOLL_FORCE).
func WriteMem(tid int, addr uint64, buf []byte) error {
	f, err := procfs.OpenMem(tid, os.O_WRONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(buf, int64(addr))
	return err
}
