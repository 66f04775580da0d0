package fs

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// userHZ is the unit of /proc's clock ticks (sysconf(_SC_CLK_TCK)): the
// kernel's USER_HZ, 100 on every architecture ckptfs runs on.
const userHZ = 100

// bootTime is when the system booted, from /proc/stat's btime, read once:
// computed afresh, it would move with every change of the wall clock, and
// so would every process directory's mtime.
var bootTime = sync.OnceValue(func() time.Time {
	f, err := os.Open(procfs.Root + "/stat")
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			if sec, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64); err == nil {
				return time.Unix(sec, 0)
			}
		}
	}
	return time.Time{}
})

// startedAt is when a process started, from its start time in clock
// ticks after boot (/proc/<pid>/stat field 22); zero if the boot time is
// unknown.
func startedAt(ticks uint64) time.Time {
	boot := bootTime()
	if boot.IsZero() {
		return time.Time{}
	}
	return boot.Add(time.Duration(ticks) * (time.Second / userHZ))
}
