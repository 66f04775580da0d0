package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadOOMScoreAdj reads /proc/<pid>/oom_score_adj.
func ReadOOMScoreAdj(pid int) (int32, error) {
	path := pidDir(pid) + "/oom_score_adj"
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return int32(n), nil
}

// WriteOOMScoreAdj sets /proc/<pid>/oom_score_adj.
func WriteOOMScoreAdj(pid int, adj int32) error {
	return os.WriteFile(pidDir(pid)+"/oom_score_adj", []byte(strconv.Itoa(int(adj))), 0)
}
