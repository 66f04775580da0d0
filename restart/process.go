package restart

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
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
	adj := strconv.Itoa(int(pr.OOMScoreAdj))
	if err := os.WriteFile("/proc/"+strconv.Itoa(p.tid)+"/oom_score_adj", []byte(adj), 0); err != nil {
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
