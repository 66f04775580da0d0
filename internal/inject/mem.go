package inject

import (
	"os"
	"strconv"
)

// ReadMem reads the task's memory at addr through /proc/<pid>/mem.
func ReadMem(tid int, addr uint64, buf []byte) error {
	f, err := os.Open("/proc/" + strconv.Itoa(tid) + "/mem")
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
	f, err := os.OpenFile("/proc/"+strconv.Itoa(tid)+"/mem", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(buf, int64(addr))
	return err
}
