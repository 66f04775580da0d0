package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadPersonality reads /proc/<pid>/personality (hexadecimal).
func ReadPersonality(pid int) (uint32, error) {
	path := pidDir(pid) + "/personality"
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return uint32(n), nil
}
