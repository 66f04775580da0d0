package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// FDInfo is what /proc/<pid>/fdinfo/<fd> says of a descriptor.
type FDInfo struct {
	Pos   uint64
	Flags uint32 // open flags, O_CLOEXEC included
}

// FDs lists the descriptor numbers of process pid, sorted.
func FDs(pid int) ([]int, error) {
	return numericEntries(pidDir(pid)+"/fd", 0)
}

// FDTarget reads the /proc/<pid>/fd/<fd> link: a path, or "pipe:[ino]",
// "socket:[ino]", "anon_inode:[eventfd]" ...
func FDTarget(pid, fd int) (string, error) {
	return os.Readlink(pidDir(pid) + "/fd/" + strconv.Itoa(fd))
}

// FDPath is the /proc path that opens the file behind a descriptor.
func FDPath(pid, fd int) string { return pidDir(pid) + "/fd/" + strconv.Itoa(fd) }

// ReadFDInfo reads /proc/<pid>/fdinfo/<fd>.
func ReadFDInfo(pid, fd int) (*FDInfo, error) {
	path := pidDir(pid) + "/fdinfo/" + strconv.Itoa(fd)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var fi FDInfo
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "pos":
			if fi.Pos, err = strconv.ParseUint(val, 10, 64); err != nil {
				return nil, fmt.Errorf("%s: pos: %w", path, err)
			}
		case "flags":
			f, err := strconv.ParseUint(val, 8, 32)
			if err != nil {
				return nil, fmt.Errorf("%s: flags: %w", path, err)
			}
			fi.Flags = uint32(f)
		}
	}
	return &fi, nil
}
