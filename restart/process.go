package restart

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// setProcess gives the process its working directory and root, umask,
// personality, nice value, oom_score_adj, no_new_privs and child-subreaper
// flag back. Paths in the image are as the checkpointer saw them, from its
// own root: the task changes directory before it changes root. withFS
// false leaves the working directory, root and umask (its fs struct,
// shared with another process that puts them back) alone.
func (p *proc) setProcess(pr *image.Process, rsp uint64, withFS bool) error {
	pathCall := func(nr uintptr, path string) error {
		return p.withStackArg(rsp, append([]byte(path), 0), func(addr uint64) error {
			_, err := p.syscall(nr, addr)
			return err
		})
	}
	if withFS {
		if err := pathCall(unix.SYS_CHDIR, pr.Cwd); err != nil {
			return fmt.Errorf("chdir %s: %w", pr.Cwd, err)
		}
	}
	if withFS && pr.Root != "/" {
		if err := pathCall(unix.SYS_CHROOT, pr.Root); err != nil {
			return fmt.Errorf("chroot %s: %w", pr.Root, err)
		}
	}
	type call struct {
		what string
		nr   uintptr
		args []uint64
	}
	var calls []call
	if withFS {
		calls = append(calls, call{"umask", unix.SYS_UMASK, []uint64{uint64(pr.Umask)}})
	}
	calls = append(calls, []call{
		{"personality", unix.SYS_PERSONALITY, []uint64{uint64(pr.Personality)}},
		{"nice", unix.SYS_SETPRIORITY, []uint64{unix.PRIO_PROCESS, 0, uint64(int64(pr.Nice))}},
		{"child subreaper", unix.SYS_PRCTL, []uint64{unix.PR_SET_CHILD_SUBREAPER, b2u(pr.Subreaper)}},
	}...)
	if pr.NoNewPrivs {
		calls = append(calls, call{"no_new_privs", unix.SYS_PRCTL, []uint64{unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0}})
	}
	for _, c := range calls {
		if _, err := p.syscall(c.nr, c.args...); err != nil {
			return fmt.Errorf("%s: %w", c.what, err)
		}
	}
	if err := procfs.WriteOOMScoreAdj(p.tid, pr.OOMScoreAdj); err != nil {
		return fmt.Errorf("oom_score_adj: %w", err)
	}
	return nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// setRLimits gives the process its resource limits back. The task sets
// them itself (prlimit64 on pid 0), as only a task with CAP_SYS_RESOURCE
// may set another's; a limit it already has is left alone. Lowering always
// works; raising a hard limit above the one the task inherited needs
// CAP_SYS_RESOURCE, and without it the restore fails rather than leave
// the process a limit it did not have.
func (p *proc) setRLimits(l []image.RLimit, rsp uint64) error {
	now, err := procfs.ReadLimits(p.tid)
	if err != nil {
		return fmt.Errorf("resource limits: %w", err)
	}
	arg := make([]byte, 16) // struct rlimit64
	for res, want := range l {
		have := now[res]
		if want.Cur == have.Soft && want.Max == have.Hard {
			continue
		}
		binary.LittleEndian.PutUint64(arg, want.Cur)
		binary.LittleEndian.PutUint64(arg[8:], want.Max)
		err := p.withStackArg(rsp, arg, func(addr uint64) error {
			_, err := p.syscall(unix.SYS_PRLIMIT64, 0, uint64(res), addr, 0)
			return err
		})
		name, f := image.RLimitName(res), image.FormatRLimit
		switch {
		case err == nil:
		case want.Max > have.Hard:
			return fmt.Errorf("%s: hard limit %s is above the %s the restored task inherited; raising it needs CAP_SYS_RESOURCE: %w",
				name, f(want.Max), f(have.Hard), err)
		default:
			return fmt.Errorf("%s: soft %s, hard %s (inherited soft %s, hard %s): %w",
				name, f(want.Cur), f(want.Max), f(have.Soft), f(have.Hard), err)
		}
	}
	return nil
}

// setSched gives the thread its nice value, then its scheduling policy
// and real-time priority back. Both are the thread's own: PRIO_PROCESS
// with who 0 and sched_setscheduler with pid 0 mean the calling thread.
// sched_setscheduler keeps the nice value set first (the kernel keeps one
// for real-time threads too, for when they leave their policy). Both are
// set even at their defaults: a new task has its creator's.
func (p *proc) setSched(a *image.ThreadAttr, rsp uint64) error {
	if _, err := p.syscall(unix.SYS_SETPRIORITY, unix.PRIO_PROCESS, 0, uint64(int64(a.Nice))); err != nil {
		return fmt.Errorf("nice %d: %w", a.Nice, err)
	}
	policy := uint64(a.Policy)
	if a.ResetOnFork {
		policy |= unix.SCHED_RESET_ON_FORK
	}
	param := binary.LittleEndian.AppendUint32(nil, a.Priority) // struct sched_param
	err := p.withStackArg(rsp, param, func(addr uint64) error {
		_, err := p.syscall(unix.SYS_SCHED_SETSCHEDULER, 0, policy, addr)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s priority %d (reset on fork %v): %w", image.PolicyName(a.Policy), a.Priority, a.ResetOnFork, err)
	}
	return nil
}

// setPDeathSig gives the thread its parent-death signal back. It must come
// after its credentials: the kernel clears the signal when they change.
func (p *proc) setPDeathSig(sig uint32) error {
	if sig == 0 {
		return nil // a new task has none
	}
	if _, err := p.syscall(unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uint64(sig)); err != nil {
		return fmt.Errorf("parent-death signal %d: %w", sig, err)
	}
	return nil
}
