package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Stat is what ckptfs reads from /proc/<pid>/stat (or a thread's
// /proc/<tgid>/task/<tid>/stat): one parser for every use of the file.
type Stat struct {
	Comm       string
	State      byte   // field 3
	PPid       int    // field 4
	PGrp       int    // field 5: the process group
	TTY        uint64 // field 7: the controlling terminal's device number, 0 for none
	TPGid      int    // field 8: the foreground process group of that terminal, -1 for none
	Flags      uint32 // field 9: the kernel's PF_* task flags
	MinFlt     uint64 // field 10: minor page faults (of every thread, in /proc/<pid>/stat)
	Nice       int32  // field 19
	StartTime  uint64 // field 22, clock ticks after boot: with the pid, a process's identity
	ExitSignal int32  // field 38: the signal its parent gets when it ends (0 for a clone's none)
	RTPriority uint32 // field 40: 1-99 under SCHED_FIFO and SCHED_RR, else 0
	Policy     uint32 // field 41: SCHED_* without SCHED_RESET_ON_FORK
	ExitCode   int32  // field 52: the wait status of a zombie
	MM         MMFields
}

// MMFields are the address-space boundaries stat shows (fields 26-28 and
// 45-51).
type MMFields struct {
	StartCode, EndCode, StartStack     uint64
	StartData, EndData, StartBrk       uint64
	ArgStart, ArgEnd, EnvStart, EnvEnd uint64
}

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (*Stat, error) {
	return readStat(pidDir(pid) + "/stat")
}

// ReadTaskStat reads /proc/<tgid>/task/<tid>/stat: the view of one thread,
// whose nice value, priority and policy are its own.
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
	// fields[0] is field 3 (state) of proc(5); field k is fields[k-3].
	fields := bytes.Fields(data[end+1:])
	if len(fields) < 52-2 {
		return nil, fmt.Errorf("have %d fields, want at least 52", len(fields)+2)
	}
	s.State = fields[0][0]
	var err error
	num := func(field int, name string, bits int) uint64 {
		if err != nil {
			return 0
		}
		n, e := strconv.ParseUint(string(fields[field-3]), 10, bits)
		if e != nil {
			err = fmt.Errorf("field %d (%s): %w", field, name, e)
		}
		return n
	}
	signed := func(field int, name string) int64 {
		if err != nil {
			return 0
		}
		n, e := strconv.ParseInt(string(fields[field-3]), 10, 32)
		if e != nil {
			err = fmt.Errorf("field %d (%s): %w", field, name, e)
		}
		return n
	}
	s.PPid = int(signed(4, "ppid"))
	s.PGrp = int(signed(5, "pgrp"))
	s.TTY = uint64(uint32(signed(7, "tty_nr")))
	s.TPGid = int(signed(8, "tpgid"))
	s.Flags = uint32(num(9, "flags", 32))
	s.MinFlt = num(10, "minflt", 64)
	s.Nice = int32(signed(19, "nice"))
	s.StartTime = num(22, "starttime", 64)
	s.ExitSignal = int32(signed(38, "exit_signal"))
	s.RTPriority = uint32(num(40, "rt_priority", 32))
	s.Policy = uint32(num(41, "policy", 32))
	s.ExitCode = int32(signed(52, "exit_code"))
	s.MM = MMFields{
		StartCode: num(26, "startcode", 64), EndCode: num(27, "endcode", 64), StartStack: num(28, "startstack", 64),
		StartData: num(45, "start_data", 64), EndData: num(46, "end_data", 64), StartBrk: num(47, "start_brk", 64),
		ArgStart: num(48, "arg_start", 64), ArgEnd: num(49, "arg_end", 64),
		EnvStart: num(50, "env_start", 64), EnvEnd: num(51, "env_end", 64),
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}
