package checkpoint

import (
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/inject"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// readProcess reads a process's cwd, root, umask, personality, nice value,
// oom_score_adj and no_new_privs from /proc, and its child-subreaper flag,
// which only prctl tells, from the stopped task itself.
func readProcess(t *taskInfo, inj *inject.Task) (*image.Process, error) {
	p := &image.Process{Umask: t.status.Umask, NoNewPrivs: t.status.NoNewPrivs, Nice: t.stat.Nice}
	var err error
	if p.Cwd, err = procfs.Cwd(t.tgid); err != nil {
		return nil, err
	}
	if p.Root, err = procfs.RootDir(t.tgid); err != nil {
		return nil, err
	}
	if strings.HasSuffix(p.Cwd, " (deleted)") {
		return nil, fmt.Errorf("working directory %s: %w", p.Cwd, ErrUnsupported)
	}
	if p.Personality, err = procfs.ReadPersonality(t.tgid); err != nil {
		return nil, err
	}
	if p.OOMScoreAdj, err = procfs.ReadOOMScoreAdj(t.tgid); err != nil {
		return nil, err
	}
	b, err := inj.Query(4, unix.SYS_PRCTL, unix.PR_GET_CHILD_SUBREAPER, inj.Data())
	if err != nil {
		return nil, fmt.Errorf("PR_GET_CHILD_SUBREAPER: %w", err)
	}
	p.Subreaper = binary.LittleEndian.Uint32(b) != 0
	return p, nil
}

// readRLimits reads a process's resource limits from /proc/<pid>/limits:
// prlimit(2) on another process needs CAP_SYS_RESOURCE unless the ids
// match, the file does not.
func readRLimits(t *taskInfo) ([]image.RLimit, error) {
	lims, err := procfs.ReadLimits(t.tgid)
	if err != nil {
		return nil, fmt.Errorf("resource limits: %w", err)
	}
	out := make([]image.RLimit, len(lims))
	for i, l := range lims {
		out[i] = image.RLimit{Cur: l.Soft, Max: l.Hard}
	}
	return out, nil
}

// readThreadAttr reads a thread's scheduling policy, real-time priority
// and reset-on-fork flag (sched_getattr, which any task may ask of any
// other, and which unlike the stat file shows the flag), its nice value
// (its own stat, read at collect) and its parent-death signal, which only
// the thread itself can tell (PR_GET_PDEATHSIG).
func readThreadAttr(t *taskInfo, inj *inject.Task) (*image.ThreadAttr, error) {
	sa, err := unix.SchedGetAttr(t.tid, 0)
	if err != nil {
		return nil, fmt.Errorf("sched_getattr: %w", err)
	}
	a := &image.ThreadAttr{Policy: sa.Policy, ResetOnFork: sa.Flags&unix.SCHED_FLAG_RESET_ON_FORK != 0, Nice: t.stat.Nice}
	switch sa.Policy {
	case image.SchedFIFO, image.SchedRR:
		a.Priority = sa.Priority
	case image.SchedOther, image.SchedBatch, image.SchedIdle:
	default:
		// SCHED_DEADLINE's runtime, deadline and period are not recorded.
		return nil, fmt.Errorf("scheduling policy %s: %w", image.PolicyName(sa.Policy), ErrUnsupported)
	}
	b, err := inj.Query(4, unix.SYS_PRCTL, unix.PR_GET_PDEATHSIG, inj.Data())
	if err != nil {
		return nil, fmt.Errorf("PR_GET_PDEATHSIG: %w", err)
	}
	a.PDeathSig = binary.LittleEndian.Uint32(b)
	return a, nil
}
