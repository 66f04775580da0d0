package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

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
