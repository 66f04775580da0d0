package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Stat is what ckptfs reads from /proc/<pid>/stat.
type Stat struct {
	Comm      string
	State     byte
	StartTime uint64 // clock ticks after boot: with the pid, a process's identity
	ExitCode  int32  // wait status of a zombie (field 52)
}

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (*Stat, error) {
	return readStat(pidDir(pid) + "/stat")
}

// ReadTaskStat reads /proc/<tgid>/task/<tid>/stat.
func ReadTaskStat(tgid, tid int) (*Stat, error) {
	return readStat(taskDir(tgid, tid) + "/stat")
}

func readStat(path string) (*Stat, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := parseStat(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func parseStat(data []byte) (*Stat, error) {
	// comm may hold spaces and parentheses: it ends at the last ')'.
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return nil, fmt.Errorf("no comm field")
	}
	s := &Stat{Comm: string(data[open+1 : end])}
	// fields[0] is field 3 (state) of proc(5).
	fields := bytes.Fields(data[end+1:])
	if len(fields) < 20 {
		return nil, fmt.Errorf("have %d fields, want at least 22", len(fields)+2)
	}
	s.State = fields[0][0]
	var err error
	if s.StartTime, err = strconv.ParseUint(string(fields[22-3]), 10, 64); err != nil {
		return nil, fmt.Errorf("starttime: %w", err)
	}
	if len(fields) >= 52-2 {
		code, err := strconv.ParseInt(string(fields[52-3]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("exit_code: %w", err)
		}
		s.ExitCode = int32(code)
	}
	return s, nil
}
