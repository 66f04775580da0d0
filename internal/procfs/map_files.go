package procfs

import "fmt"

// MapFilesPath is /proc/<pid>/map_files/<start>-<end>: the object behind a
// mapping, which may be opened even when nothing else names it (shared
// anonymous memory, a deleted file).
func MapFilesPath(pid int, start, end uint64) string {
	return fmt.Sprintf("%s/map_files/%x-%x", pidDir(pid), start, end)
}
