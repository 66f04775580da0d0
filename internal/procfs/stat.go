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
	PPid      int
	Nice      int32
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
	ppid, err := strconv.Atoi(string(fields[4-3]))
	if err != nil {
		return nil, fmt.Errorf("ppid: %w", err)
	}
	s.PPid = ppid
	nice, err := strconv.ParseInt(string(fields[19-3]), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("nice: %w", err)
	}
	s.Nice = int32(nice)
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

// MMFields are the address-space boundaries /proc/<pid>/stat shows
// (fields 26-28 and 45-51).
type MMFields struct {
	StartCode, EndCode, StartStack     uint64
	StartData, EndData, StartBrk       uint64
	ArgStart, ArgEnd, EnvStart, EnvEnd uint64
}

// ReadMMFields reads the address-space boundaries of process pid.
func ReadMMFields(pid int) (*MMFields, error) {
	path := pidDir(pid) + "/stat"
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return nil, fmt.Errorf("%s: no comm field", path)
	}
	fields := bytes.Fields(data[end+1:])
	num := func(field int) uint64 {
		if field-3 >= len(fields) {
			err = fmt.Errorf("%s: no field %d", path, field)
			return 0
		}
		n, e := strconv.ParseUint(string(fields[field-3]), 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("%s: field %d: %w", path, field, e)
		}
		return n
	}
	m := &MMFields{
		StartCode: num(26), EndCode: num(27), StartStack: num(28),
		StartData: num(45), EndData: num(46), StartBrk: num(47),
		ArgStart: num(48), ArgEnd: num(49), EnvStart: num(50), EnvEnd: num(51),
	}
	return m, err
}
