package restart

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/ptrace"
	"github.com/ckptfs/ckptfs/internal/seed"
)

// Result says what a restore made.
type Result struct {
	Root  int       // the restored root's pid, in the restorer's namespace
	Seed  int       // the seed: the root's parent, reaper of the tree
	Tasks []TaskPid // every task of the image, in TREE order
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
}

// Restore reads an image from r and restarts its tree. It returns once
// every task runs again (zombies stay zombies). On error, or when ctx is
// done before the end, nothing it created is left behind: every task is
// killed and reaped.
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
	plan, err := MakePlan(Forest{Mode: hdr.Mode, Pids: *pids, Tree: *tree})
	if err != nil {
		return nil, err // names itself: "restart: forest cannot be rebuilt: ..."
	}
	g, err := newGate(opt.As)
	if err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	defer g.close()
	rs := &restorer{plan: plan, hdr: hdr, ir: ir, tr: ptrace.NewTracer(), pages: newPageFiller(), opt: opt, gate: g}
	rs.sockets.capped = opt.As != nil
	defer rs.pages.close()
	defer rs.pipes.close()
	defer rs.sockets.close()
	defer rs.files.close()
	defer rs.shmem.close()
	res, err := rs.run()
	if err != nil {
		rs.teardown()
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
	plan *Plan
	hdr  *image.Header
	ir   *image.Reader
	tr   *ptrace.Tracer
	cmd  *exec.Cmd // the seed
	ex   executor
	dead map[ProcID]bool // exited as the plan or the image wants

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
}

func (rs *restorer) run() (*Result, error) {
	cmd, err := seed.Start()
	if err != nil {
		return nil, err
	}
	rs.cmd = cmd
	rs.ex = executor{plan: rs.plan, procs: make([]*proc, len(rs.plan.Procs))}
	rs.dead = make(map[ProcID]bool)
	err = rs.tr.Do(func() error {
		s, err := seize(cmd.Process.Pid)
		if err != nil {
			return fmt.Errorf("seize seed %d: %w", cmd.Process.Pid, err)
		}
		if err := checkXSave(s.tid, rs.hdr); err != nil {
			return err
		}
		if rs.seedCreds, err = credsOfTask(s.tid); err != nil {
			return err
		}
		rs.ex.procs[Restorer] = s
		return rs.ex.run()
	})
	if err != nil {
		return nil, fmt.Errorf("restart: build forest: %w", err)
	}
	for _, st := range rs.plan.Steps {
		if x, ok := st.(Exit); ok {
			rs.dead[x.Actor] = true
		}
	}
	if err := rs.tr.Do(rs.verify); err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	if err := rs.tasks(); err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	return rs.release()
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
	}
}

// release lets the whole forest run, and the seed reap.
func (rs *restorer) release() (*Result, error) {
	res := &Result{Seed: rs.cmd.Process.Pid}
	err := rs.tr.Do(func() error {
		for id, p := range rs.ex.procs {
			if p == nil || rs.dead[ProcID(id)] || ProcID(id) == Restorer {
				continue
			}
			if err := ptrace.Detach(p.tid, p.inj.Pending); err != nil {
				return fmt.Errorf("release pid %d: %w", p.tid, err)
			}
		}
		return rs.releaseSeed()
	})
	rs.tr.Close()
	if err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	go rs.cmd.Wait() // the seed exits once its tree is gone
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

// teardown kills everything a failed restore created, then lets the seed
// reap it and exit.
func (rs *restorer) teardown() {
	if rs.cmd == nil {
		rs.tr.Close()
		return
	}
	rs.tr.Do(func() error {
		for id, p := range rs.ex.procs {
			if p != nil && ProcID(id) != Restorer && !rs.dead[ProcID(id)] {
				p.kill()
			}
		}
		if rs.ex.procs[Restorer] != nil {
			return rs.releaseSeed()
		}
		return nil
	})
	rs.tr.Close() // detaches (and, EXITKILL, kills) whatever is still traced
	unix.Kill(rs.cmd.Process.Pid, unix.SIGCONT)
	rs.cmd.Wait()
}

// releaseSeed lets the seed go on from where it stopped itself, into the
// loop that reaps the tree.
func (rs *restorer) releaseSeed() error {
	s := rs.ex.procs[Restorer]
	if err := s.inj.Restore(); err != nil {
		return err
	}
	if err := ptrace.Detach(s.tid, 0); err != nil {
		return err
	}
	// It stopped itself with SIGSTOP before we seized it, and a task
	// detached in a group stop stays stopped.
	return unix.Kill(s.tid, unix.SIGCONT)
}

func pidNumbers(p *image.Pids, tag image.Tag) []int32 {
	var out []int32
	for _, l := range p.Pids[tag-1].Levels {
		out = append(out, l.Nr)
	}
	return out
}
