package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// FDInfo is what /proc/<pid>/fdinfo/<fd> says of a descriptor.
type FDInfo struct {
	Pos   uint64
	Flags uint32 // open flags, O_CLOEXEC included

	EventfdCount     uint64      // an eventfd's counter
	EventfdSemaphore bool        // an eventfd in semaphore mode
	EpollWatches     []EpollItem // an epoll instance's watches
}

// EpollItem is one watch of an epoll instance ("tfd:" lines).
type EpollItem struct {
	FD     int
	Events uint32
	Data   uint64
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
	for key, val := range fields(data) {
		switch key {
		case "tfd":
			it, err := parseEpollItem(val)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			fi.EpollWatches = append(fi.EpollWatches, it)
		case "eventfd-count":
			if fi.EventfdCount, err = strconv.ParseUint(val, 16, 64); err != nil {
				return nil, fmt.Errorf("%s: eventfd-count: %w", path, err)
			}
		case "eventfd-semaphore":
			fi.EventfdSemaphore = val == "1"
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

// parseEpollItem reads the rest of a "tfd:" line:
// "7 events: 19 data: 5a7e48 pos:0 ino:414 sdev:10" (events and data hex).
func parseEpollItem(val string) (EpollItem, error) {
	var it EpollItem
	f := strings.Fields(val)
	if len(f) < 5 || f[1] != "events:" || f[3] != "data:" {
		return it, fmt.Errorf("bad epoll line %q", val)
	}
	fd, err1 := strconv.Atoi(f[0])
	ev, err2 := strconv.ParseUint(f[2], 16, 32)
	data, err3 := strconv.ParseUint(f[4], 16, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return it, fmt.Errorf("bad epoll line %q", val)
	}
	return EpollItem{FD: fd, Events: uint32(ev), Data: data}, nil
}
