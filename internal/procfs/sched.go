package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Sched is a thread's place in the scheduler as its stat file shows it.
// The kernel keeps these per thread, not per process.
type Sched struct {
	Nice       int32  // field 19
	RTPriority uint32 // field 40: 1-99 under SCHED_FIFO and SCHED_RR, else 0
	Policy     uint32 // field 41: SCHED_* without SCHED_RESET_ON_FORK
}

// ReadTaskSched reads the scheduling fields of /proc/<tgid>/task/<tid>/stat.
func ReadTaskSched(tgid, tid int) (*Sched, error) {
	path := taskDir(tgid, tid) + "/stat"
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := parseSched(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func parseSched(data []byte) (*Sched, error) {
	// comm may hold spaces and parentheses: it ends at the last ')', and
	// fields[0] is field 3 of proc(5).
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return nil, fmt.Errorf("no comm field")
	}
	fields := bytes.Fields(data[end+1:])
	if len(fields) < 41-2 {
		return nil, fmt.Errorf("have %d fields, want at least 41", len(fields)+2)
	}
	nice, err := strconv.ParseInt(string(fields[19-3]), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("nice: %w", err)
	}
	prio, err := strconv.ParseUint(string(fields[40-3]), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("rt_priority: %w", err)
	}
	policy, err := strconv.ParseUint(string(fields[41-3]), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return &Sched{Nice: int32(nice), RTPriority: uint32(prio), Policy: uint32(policy)}, nil
}
