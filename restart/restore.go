package restart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/cleanup"
	"github.com/ckptfs/ckptfs/internal/fault"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/ptrace"
	"github.com/ckptfs/ckptfs/internal/seed"
	"github.com/ckptfs/ckptfs/internal/sys"
	"github.com/ckptfs/ckptfs/restart/internal/plan"
)

// Result says what a restore made.
type Result struct {
	Root  int       // the restored root's pid, in the restorer's namespace
	Seed  int       // the seed: the root's parent, reaper of the tree
	Tasks []TaskPid // every task of the image, in TREE order
	// Foreground: what became of a shell job's foreground
	// (Options.Foreground), nil when not asked.
	Foreground *Foreground `json:",omitempty"`
}

// Result.Foreground says what became of a shell job's terminal.
type Foreground struct {
	PGid  int    `json:",omitempty"` // the process group now in the foreground
	Error string `json:",omitempty"` // why none could be made so
}

// TaskPid maps a task of the image to the task that now runs it.
type TaskPid struct {
	Image  []int32 // its pid in the image, from the root's level inwards
	Now    []int32 // its pid now, likewise
	Host   int     // its pid in the restorer's namespace
	Zombie bool
}

// Options tune a restore.
type Options struct {
	// AllowCreds vets the credentials of every task before they are given
	// to it; an error fails the restore before any task of the image runs.
	// The filesystem uses it to let an unprivileged caller restore only
	// its own processes.
	AllowCreds func(*image.Creds) error
	// As, when set, is an unprivileged caller: the files the image names
	// are found and made with its rights, not the restorer's (see gate).
	As *Identity
	// Terminal, when set, makes the restore a shell job: every descriptor
	// of the image that led to a terminal becomes this one (else
	// /dev/null).
	Terminal *os.File
	// Foreground also gives Terminal to the process group that had its
	// terminal in the foreground at the checkpoint (tcsetpgrp), which
	// needs the terminal to be the restorer's session's own: the CLI's
	// --shell-job, not the daemon, which has no terminal.
	Foreground bool
}

// Restore reads an image from r and restarts its tree. It returns once
// every task runs again (zombies stay zombies). On error, or when ctx is
// done before the end, nothing it created is left behind: every task is
// killed and reaped (see teardown).
func Restore(ctx context.Context, r io.Reader, opt Options) (*Result, error) {
	ir := image.NewReader(r)
	hdr, err := ir.Header()
	if err != nil {
		return nil, err
	}
	if err := compatible(hdr); err != nil {
		return nil, err
	}
	pids, err := ir.Pids()
	if err != nil {
		return nil, err
	}
	tree, err := ir.Tree()
	if err != nil {
		return nil, err
	}
	// Zombies are learnt from their TASK records, which come later: the
	// forest is planned with every task alive, and a zombie exits when its
	// record arrives (it has no children to create by then: the kernel
	// gave them away when it died).
	pl, err := plan.Make(plan.Forest{Mode: hdr.Mode, Pids: *pids, Tree: *tree})
	if err != nil {
		return nil, err // names itself: "restart: forest cannot be rebuilt: ..."
	}
	g, err := newGate(opt.As)
	if err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	defer g.close()
	rs := &restorer{ctx: ctx, plan: pl, hdr: hdr, ir: ir, pages: newPageFiller(), opt: opt, gate: g}
	if opt.Terminal != nil {
		rs.terminal = procfs.FDPath(os.Getpid(), int(opt.Terminal.Fd()))
	}
	rs.sockets.capped = opt.As != nil
	defer rs.pages.close()
	defer rs.pipes.close()
	defer rs.sockets.close()
	defer rs.files.close()
	defer rs.shmem.close()
	res, err := rs.run()
	if err != nil {
		if uerr := rs.undo.Undo(); uerr != nil {
			// The restore's own error is the one to report; the teardown's
			// only says it could not wait for everything to be gone.
			err = fmt.Errorf("%w (and its teardown: %v)", err, uerr)
		}
		return nil, err
	}
	return res, nil
}

// compatible refuses an image this machine cannot run.
func compatible(h *image.Header) error {
	if ps := os.Getpagesize(); int(h.PageSize) != ps {
		return fmt.Errorf("restart: image page size %d, this machine's %d", h.PageSize, ps)
	}
	return nil
}

// restorer holds a restore in progress.
type restorer struct {
	ctx  context.Context
	plan *plan.Plan
	hdr  *image.Header
	ir   *image.Reader
	tr   *ptrace.Tracer
	seed *seed.Seed
	ex   executor
	dead map[plan.ProcID]bool // exited as the plan or the image wants
	// undo tears down what the restore made, should it fail (teardown).
	undo cleanup.Stack

	opt   Options
	pages *pageFiller // writes page contents while the next are read

	deferred []deferredSignals // process-wide pending signals, queued last

	// seedCreds are the credentials every task is created with: a task
	// whose image has the same needs no call to get them.
	seedCreds *image.Creds
	pipes     pipeSet     // the image's pipes, until the tasks have opened them
	sockets   socketSet   // the image's socket pairs, until the tasks have them
	files     fileDataSet // the image's deleted files and memfds, until the tasks have opened them
	gate      *gate       // finds what the image names by path
	shmem     shmemSet    // the image's shared anonymous memory, until mapped
	// terminal is how tasks open Options.Terminal; foreground a process
	// whose group had its terminal in the foreground (0 for none).
	terminal   string
	foreground int
}

// Tearing down a failed restore.
//
// Every task a restore creates is a tracee of its tracer thread, traced
// with PTRACE_O_EXITKILL from birth (the seed's clones are auto-attached).
// So the tracer thread's exit, when the daemon dies, kills every task not
// yet let go and detaches them all in one go. The tasks already let go
// when a restore fails or the daemon dies are killed by the seed, which
// guards them through the release (see release).
//
// A teardown does it step by step, and waits for each step (killForest):
// it kills every task, then collects the report of each one's death,
// children before parents (a namespace's init cannot finish dying while
// its children's deaths are still ours to collect: waiting for the init
// first would wait for ever), then lets the seed go, which reaps them and
// exits once every process it reaps is gone. Waiting for the seed, within
// a bound, is waiting for the whole forest to be gone. The undo stack
// holds these steps: kill the forest and let the seed go, end the seed,
// close the tracer.

// seedExitTimeout bounds the wait for a torn-down forest to be gone.
const seedExitTimeout = 10 * time.Second

func (rs *restorer) run() (*Result, error) {
	if err := rs.cancelled("start"); err != nil {
		return nil, err
	}
	rs.tr = ptrace.NewTracer()
	rs.undo.AddFunc(rs.tr.Close)
	rs.ex = executor{ctx: rs.ctx, plan: rs.plan, procs: make([]*proc, len(rs.plan.Procs))}
	rs.dead = make(map[plan.ProcID]bool)
	err := rs.tr.Do(func() error {
		// Started from the tracer's thread: the seed's parent-death signal
		// fires when the thread that forked it exits, and this one lives
		// exactly as long as the seed must die with it (until release).
		s, err := seed.Start()
		if err != nil {
			return err
		}
		rs.seed = s
		rs.undo.Add(rs.endSeed)
		p, err := seize(s.Pid())
		if err != nil {
			return fmt.Errorf("seize seed %d: %w", s.Pid(), err)
		}
		fault.Point("restart-seeded")
		if err := checkXSave(p.tid, rs.hdr); err != nil {
			return err
		}
		if rs.seedCreds, err = credsOfTask(p.tid); err != nil {
			return err
		}
		rs.ex.procs[plan.Restorer] = p
		rs.undo.Add(func() error { return rs.tr.Do(rs.killForest) })
		return rs.ex.run()
	})
	if err != nil {
		if rs.seed == nil {
			return nil, fmt.Errorf("restart: %w", err)
		}
		return nil, fmt.Errorf("restart: build forest: %w", err)
	}
	for _, st := range rs.plan.Steps {
		if x, ok := st.(plan.Exit); ok {
			rs.dead[x.Actor] = true
		}
	}
	if err := rs.tr.Do(rs.verify); err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	if err := rs.tasks(); err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	var fg *Foreground
	if rs.opt.Terminal != nil && rs.opt.Foreground {
		// Before the tasks run: one that reads its terminal in the
		// background would be stopped (SIGTTIN).
		fg = rs.giveTerminal()
	}
	res, err := rs.release()
	if res != nil {
		res.Foreground = fg
	}
	return res, err
}

// cancelled says why the restore must stop, if its context is done.
func (rs *restorer) cancelled(at string) error {
	if rs.ctx.Err() == nil {
		return nil
	}
	return fmt.Errorf("restart: cancelled at %s: %w", at, context.Cause(rs.ctx))
}

// deferredSignals are a process's pending shared signals, queued through
// its leader once every thread of the tree has its blocked mask back.
type deferredSignals struct {
	leader *proc
	rsp    uint64
	regs   *image.Regs // to load again after the calls that queue them
	sigs   []image.PendingSignal
}

// tasks streams the per-task state of the image into the stopped tasks.
func (rs *restorer) tasks() error {
	for {
		if err := rs.cancelled("the tasks' state"); err != nil {
			return err
		}
		ts, err := rs.ir.NextTask()
		if err == io.EOF {
			// The tail's checksum is verified.
			return rs.tr.Do(func() error {
				for _, d := range rs.deferred {
					if err := d.leader.queueSignals(d.sigs, d.rsp); err != nil {
						return fmt.Errorf("pid %d: %w", d.leader.tid, err)
					}
					if err := setRegs(d.leader.tid, d.regs); err != nil {
						return fmt.Errorf("pid %d: %w", d.leader.tid, err)
					}
				}
				return nil
			})
		}
		if err != nil {
			return err
		}
		id, ok := rs.plan.ByTag[ts.Pid]
		if !ok || rs.ex.procs[id] == nil {
			return fmt.Errorf("task with pid tag %d was not created", ts.Pid)
		}
		p := rs.ex.procs[id]
		if ts.State == 'Z' {
			if err := rs.plan.CheckZombie(ts.Pid); err != nil {
				return err
			}
			err := rs.tr.Do(func() error {
				// Its memory is still the seed's: name it from there.
				if err := p.setComm(ts.Comm, p.inj.Saved.Rsp, false); err != nil {
					return err
				}
				return p.exit(ts.ExitCode)
			})
			if err != nil {
				return fmt.Errorf("pid %d: make zombie: %w", p.tid, err)
			}
			rs.dead[id] = true
			continue
		}
		if err := rs.tr.Do(func() error { return rs.task(p, ts) }); err != nil {
			return fmt.Errorf("pid %d (%s): %w", p.tid, ts.Comm, err)
		}
		fault.Point("restart-task")
	}
}

// Letting the forest go.
//
// Each task is let go by its own PTRACE_DETACH, so there is a moment when
// some run and others are still held: a daemon dying then would leave half
// a forest running (the held ones die by EXITKILL). The seed closes that
// window. It is let go first and handed the pids of every process of the
// forest, of which it takes pidfds; only once it holds them all are the
// tasks let go, and then the seed is told to commit. If the daemon dies, or
// the release fails, before the commit, the seed kills every process it
// holds; after it, the forest is the restore's result and runs on.

// guardTimeout bounds the wait for the seed to hold the forest's pidfds.
const guardTimeout = 10 * time.Second

// release lets the whole forest run, and the seed reap.
func (rs *restorer) release() (*Result, error) {
	if err := rs.cancelled("release"); err != nil {
		return nil, err
	}
	var pids []int
	for id, p := range rs.ex.procs {
		if p != nil && !rs.dead[plan.ProcID(id)] && plan.ProcID(id) != plan.Restorer && !rs.plan.Procs[id].Thread {
			pids = append(pids, p.tid)
		}
	}
	if err := rs.tr.Do(rs.releaseSeed); err != nil {
		return nil, fmt.Errorf("restart: release the seed: %w", err)
	}
	if err := rs.seed.Guard(pids, guardTimeout); err != nil {
		return nil, fmt.Errorf("restart: release: %w", err)
	}
	err := rs.tr.Do(func() error {
		for id, p := range rs.ex.procs {
			if p == nil || rs.dead[plan.ProcID(id)] || plan.ProcID(id) == plan.Restorer {
				continue
			}
			if err := ptrace.Detach(p.tid, p.inj.Pending); err != nil {
				return fmt.Errorf("release pid %d: %w", p.tid, err)
			}
			fault.Point("restart-release")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	if err := rs.seed.Commit(); err != nil {
		return nil, fmt.Errorf("restart: commit the release: %w", err)
	}
	fault.Point("restart-committed")
	rs.undo.Release()
	rs.tr.Close()      // traces nothing any more
	go rs.seed.Wait(0) // the seed exits once its tree is gone; reap it then
	res := &Result{Seed: rs.seed.Pid()}
	for _, t := range rs.plan.Forest.Tree.Tasks {
		id := rs.plan.ByTag[t.Pid]
		p := rs.ex.procs[id]
		tp := TaskPid{Image: pidNumbers(&rs.plan.Forest.Pids, t.Pid), Host: p.tid, Zombie: rs.dead[id]}
		tp.Now = tp.Image // verify() proved they are equal
		res.Tasks = append(res.Tasks, tp)
	}
	res.Root = rs.ex.procs[rs.plan.Root].tid
	return res, nil
}

// giveTerminal makes the group of the process that had its terminal in the
// foreground the foreground group of the restorer's terminal. The
// restorer may be in the background itself: SIGTTOU, which tcsetpgrp
// would then raise, is ignored for the call.
func (rs *restorer) giveTerminal() *Foreground {
	if rs.foreground == 0 {
		return &Foreground{Error: "no process of the image had its terminal in the foreground"}
	}
	pgid, err := unix.Getpgid(rs.foreground)
	if err != nil {
		return &Foreground{Error: fmt.Sprintf("process group of pid %d: %v", rs.foreground, err)}
	}
	signal.Ignore(unix.SIGTTOU)
	defer signal.Reset(unix.SIGTTOU)
	if err := unix.IoctlSetPointerInt(int(rs.opt.Terminal.Fd()), unix.TIOCSPGRP, pgid); err != nil {
		return &Foreground{Error: fmt.Sprintf("make group %d the terminal's foreground group: %v (the restored session is not the terminal's)", pgid, err)}
	}
	return &Foreground{PGid: pgid}
}

// releaseSeed lets the seed go on from where it stopped itself, into
// guarding the release and then reaping the tree.
func (rs *restorer) releaseSeed() error {
	s := rs.ex.procs[plan.Restorer]
	if s == nil {
		return nil // let go already
	}
	// From now on it outlives the daemon (see seed.c).
	if _, err := s.syscall(unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, 0); err != nil {
		return fmt.Errorf("clear the seed's parent-death signal: %w", err)
	}
	if err := s.inj.Restore(); err != nil {
		return err
	}
	if err := ptrace.Detach(s.tid, 0); err != nil {
		return err
	}
	rs.ex.procs[plan.Restorer] = nil // no longer ours to drive
	// It stopped itself with SIGSTOP before we seized it, and a task
	// detached in a group stop stays stopped.
	return unix.Kill(s.tid, unix.SIGCONT)
}

// reapTimeout bounds the wait for the tasks of a torn-down forest to die.
const reapTimeout = 5 * time.Second

// killForest kills every task the restore made but the seed, collects the
// reports of their deaths (see "Tearing down"), then lets the seed go to
// reap them. On the tracer's thread.
func (rs *restorer) killForest() error {
	var tids []int // in creation order: parents before children
	for id, p := range rs.ex.procs {
		if p != nil && plan.ProcID(id) != plan.Restorer && !rs.dead[plan.ProcID(id)] {
			tids = append(tids, p.tid)
		}
	}
	for _, tid := range tids {
		unix.Kill(tid, unix.SIGKILL)
	}
	deadline := time.Now().Add(reapTimeout)
	var stuck []int
	for i := len(tids) - 1; i >= 0; i-- {
		if !reapTracee(tids[i], deadline) {
			stuck = append(stuck, tids[i])
		}
	}
	err := rs.releaseSeed()
	if len(stuck) > 0 {
		err = errors.Join(err, fmt.Errorf("tasks %v did not die within %v of SIGKILL", stuck, reapTimeout))
	}
	return err
}

// reapTracee collects the report of a killed tracee's death, which hands
// it on to its parent to reap; false if it has not died by deadline.
func reapTracee(tid int, deadline time.Time) bool {
	for pause := 50 * time.Microsecond; ; pause = min(2*pause, 5*time.Millisecond) {
		got, ws, err := sys.Wait4(tid, unix.WNOHANG|unix.WALL)
		switch {
		case err != nil: // ECHILD: not ours any more, or already reported
			return true
		case got == tid && (ws.Exited() || ws.Signaled()):
			return true
		case got == tid:
			continue // a stop reported before the kill took effect
		case time.Now().After(deadline):
			return false
		}
		time.Sleep(pause)
	}
}

// endSeed is the last step of a teardown: a seed still held (traced, or
// stopped before it was seized) is killed; one let go is told to abort,
// and kills what it guards. Either way it exits once the forest is gone,
// which is waited for, within a bound.
func (rs *restorer) endSeed() error {
	if rs.ex.procs == nil || rs.ex.procs[plan.Restorer] != nil {
		// Never let go: it died with its tracer (EXITKILL), or was never
		// seized. Make sure.
		unix.Kill(rs.seed.Pid(), unix.SIGKILL)
	}
	rs.seed.Abort()
	return rs.seed.Wait(seedExitTimeout)
}

func pidNumbers(p *image.Pids, tag image.Tag) []int32 {
	var out []int32
	for _, l := range p.Pids[tag-1].Levels {
		out = append(out, l.Nr)
	}
	return out
}
