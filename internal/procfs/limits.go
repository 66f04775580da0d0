package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Infinity is RLIM_INFINITY, which /proc/<pid>/limits shows as "unlimited".
const Infinity = ^uint64(0)

// Limit is one resource limit: the soft limit the kernel enforces and the
// hard limit the soft one may be raised to.
type Limit struct {
	Soft, Hard uint64
}

// limitNames are the row labels of /proc/<pid>/limits, in the order of the
// RLIMIT_* numbers, which is the order the kernel prints them in
// (fs/proc/base.c, lnames).
var limitNames = [...]string{
	"Max cpu time",          // RLIMIT_CPU
	"Max file size",         // RLIMIT_FSIZE
	"Max data size",         // RLIMIT_DATA
	"Max stack size",        // RLIMIT_STACK
	"Max core file size",    // RLIMIT_CORE
	"Max resident set",      // RLIMIT_RSS
	"Max processes",         // RLIMIT_NPROC
	"Max open files",        // RLIMIT_NOFILE
	"Max locked memory",     // RLIMIT_MEMLOCK
	"Max address space",     // RLIMIT_AS
	"Max file locks",        // RLIMIT_LOCKS
	"Max pending signals",   // RLIMIT_SIGPENDING
	"Max msgqueue size",     // RLIMIT_MSGQUEUE
	"Max nice priority",     // RLIMIT_NICE
	"Max realtime priority", // RLIMIT_RTPRIO
	"Max realtime timeout",  // RLIMIT_RTTIME
}

// NumLimits is RLIM_NLIMITS, the number of resources the kernel limits.
const NumLimits = len(limitNames)

// ReadLimits reads /proc/<pid>/limits: every resource limit of the
// process, indexed by RLIMIT_* number. Unlike prlimit(2) on another
// process, reading the file needs no CAP_SYS_RESOURCE.
func ReadLimits(pid int) ([NumLimits]Limit, error) {
	path := pidDir(pid) + "/limits"
	data, err := os.ReadFile(path)
	if err != nil {
		return [NumLimits]Limit{}, err
	}
	l, err := parseLimits(data)
	if err != nil {
		return l, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// parseLimits parses the file: a heading, then one row per resource in
// RLIMIT_* order, "<name> <soft> <hard> [<units>]", each value a decimal
// number or "unlimited". The values are raw: seconds for RLIMIT_CPU,
// microseconds for RLIMIT_RTTIME, as setrlimit takes them.
func parseLimits(data []byte) ([NumLimits]Limit, error) {
	var out [NumLimits]Limit
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "Limit ") {
		return out, fmt.Errorf("no heading")
	}
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if n == NumLimits {
			return out, fmt.Errorf("more than %d limits: %q", NumLimits, line)
		}
		rest, ok := strings.CutPrefix(line, limitNames[n]+" ")
		f := strings.Fields(rest)
		if !ok || len(f) < 2 {
			return out, fmt.Errorf("row %d is %q, want %s and two values", n, line, limitNames[n])
		}
		var err error
		if out[n].Soft, err = parseLimit(f[0]); err != nil {
			return out, fmt.Errorf("%s: soft limit: %w", limitNames[n], err)
		}
		if out[n].Hard, err = parseLimit(f[1]); err != nil {
			return out, fmt.Errorf("%s: hard limit: %w", limitNames[n], err)
		}
		if out[n].Soft > out[n].Hard {
			return out, fmt.Errorf("%s: soft limit %d above hard limit %d", limitNames[n], out[n].Soft, out[n].Hard)
		}
		n++
	}
	if n != NumLimits {
		return out, fmt.Errorf("%d limits, want %d", n, NumLimits)
	}
	return out, sc.Err()
}

func parseLimit(s string) (uint64, error) {
	if s == "unlimited" {
		return Infinity, nil
	}
	return strconv.ParseUint(s, 10, 64)
}
