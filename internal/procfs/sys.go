package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CapLastCap reads /proc/sys/kernel/cap_last_cap: the highest capability
// this kernel knows.
func CapLastCap() (int, error) {
	path := Root + "/sys/kernel/cap_last_cap"
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}
