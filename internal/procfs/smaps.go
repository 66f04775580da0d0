package procfs

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// VMFlags are the kernel's flags of one mapping: the two-letter codes of
// its VmFlags line in /proc/<pid>/smaps ("wf" MADV_WIPEONFORK, "dc"
// MADV_DONTFORK ...).
type VMFlags struct {
	Start, End uint64
	Flags      []string
}

// Has reports whether the mapping has the flag of code.
func (v *VMFlags) Has(code string) bool {
	for _, f := range v.Flags {
		if f == code {
			return true
		}
	}
	return false
}

// ReadVMFlags reads the flags of every mapping of process pid. (smaps
// also sums every mapping's pages, which maps does not: read it only where
// the flags matter.)
func ReadVMFlags(pid int) ([]VMFlags, error) {
	path := pidDir(pid) + "/smaps"
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []VMFlags
	var cur VMFlags
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		first, rest, _ := strings.Cut(line, " ")
		switch {
		case first == "VmFlags:":
			cur.Flags = strings.Fields(rest)
			out = append(out, cur)
		case !strings.HasSuffix(first, ":"):
			// A mapping's line, as in maps: "start-end perms ...".
			lo, hi, ok := strings.Cut(first, "-")
			var err1, err2 error
			cur = VMFlags{}
			cur.Start, err1 = strconv.ParseUint(lo, 16, 64)
			cur.End, err2 = strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil {
				return nil, fmt.Errorf("%s: bad line %q", path, line)
			}
		}
	}
	return out, sc.Err()
}

// PrivateBytes is how much of process pid's memory no other process
// shares (Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup): for
// a copy that shared everything with its parent at the fork, the pages the
// parent has written since.
func PrivateBytes(pid int) (int64, error) {
	path := pidDir(pid) + "/smaps_rollup"
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var kb int64
	for key, val := range fields(data) {
		if key != "Private_Clean" && key != "Private_Dirty" {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(val, " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %s: %w", path, key, err)
		}
		kb += n
	}
	return kb << 10, nil
}
