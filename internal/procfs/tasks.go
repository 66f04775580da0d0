package procfs

import (
	"os"
	"slices"
	"strconv"
	"strings"
)

// Pids lists the processes (thread group leaders) of the /proc namespace.
func Pids() ([]int, error) {
	return numericEntries(Root, 1)
}

// Threads lists the thread ids of process pid, sorted.
func Threads(pid int) ([]int, error) {
	return numericEntries(pidDir(pid)+"/task", 1)
}

// Children lists the children of every thread of process pid, sorted.
// A process's children may belong to any of its threads.
func Children(pid int) ([]int, error) {
	tids, err := Threads(pid)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, tid := range tids {
		data, err := os.ReadFile(taskDir(pid, tid) + "/children")
		if err != nil {
			if os.IsNotExist(err) {
				continue // the thread exited meanwhile
			}
			return nil, err
		}
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// numericEntries lists the names of dir that are numbers of at least min,
// sorted.
func numericEntries(dir string, min int) ([]int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(names))
	for _, name := range names {
		if n, err := strconv.Atoi(name); err == nil && n >= min {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}
