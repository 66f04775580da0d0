package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/fault"
	"github.com/ckptfs/ckptfs/internal/inject"
	"github.com/ckptfs/ckptfs/internal/procfs"
	"github.com/ckptfs/ckptfs/internal/ptrace"
)

// Copy-on-write snapshots.
//
// A laid-out image (layout.go) defers the contents of the tree's private
// pages to whoever reads it. Reading them from the tree itself would keep
// the tree frozen for as long as anyone reads, however slowly. So before
// Lay lets the tree go, still frozen, it makes sure every deferred page
// can be read later as it is now:
//
//   - A process with less than smallProcess bytes of such pages has them
//     read at once, into the layout's memory: for a small process that
//     costs less than any copy.
//   - A larger one forks a copy of itself (inject.Copy): a child that
//     shares every private page with it copy-on-write and never runs, from
//     which the pages are read instead. The process runs on; a page it
//     writes before the copy ends is duplicated then, once, by the kernel.
//     The copy is invisible to the process's own code (no SIGCHLD, not
//     seen by wait without __WALL, nothing in its memory or descriptors);
//     it shows in its list of children while the snapshot lasts, and is
//     reaped by the process itself when the snapshot ends (endCopy).
//   - A copy does not share what fork does not copy: the pages of
//     mappings made MADV_WIPEONFORK or MADV_DONTFORK are read at once too
//     (unshared), as the pages of shared mappings always are (memory.go's
//     lay).
//   - A process that cannot be given a copy (fork refused: a limit on
//     processes or memory) stays frozen until its image is read or the
//     snapshot ends, as without copies.
//
// The daemon dying at any instant harms nothing: a copy let go exits at
// once (see inject.Copy). It then remains a zombie of its process, seen
// only by wait with __WALL, until the process reaps it or exits.

// smallProcess: a process with fewer bytes of deferred pages has them read
// while the tree is frozen, instead of forking a copy.
const smallProcess = 1 << 20

// memCopy is the copy of one process's memory.
type memCopy struct {
	tgid  int    // the process
	start uint64 // its start time: who it is, when it is found again to reap the copy
	c     *inject.Copy
	// mem is the copy's /proc/<pid>/mem, which its pages are read
	// through: process_vm_readv would pin them, and a page pinned while
	// the copy shares it with the process is copied for the copy first
	// (the kernel unshares anonymous pages a pin could otherwise see
	// change), which would duplicate all its memory, slowly.
	mem *os.File
	// minflt is the process's page-fault count at the fork: every page it
	// writes that the copy shares costs it a fault (copy_limit.go).
	minflt uint64
}

// liveCopies are the copies that exist, by pid, with the layout that holds
// each: a checkpoint must not take one for part of a tree (walk), and the
// filesystem does not list them.
var liveCopies = struct {
	sync.Mutex
	by map[int]*Layout
}{by: make(map[int]*Layout)}

// IsCopy reports whether pid is a copy of a process's memory that a
// snapshot of this daemon holds.
func IsCopy(pid int) bool {
	liveCopies.Lock()
	defer liveCopies.Unlock()
	return liveCopies.by[pid] != nil
}

// EndCopies ends every copy this daemon holds, as closing their layouts
// would: for a daemon about to exit, so that no copy outlives it as a
// zombie of its process.
func EndCopies() {
	liveCopies.Lock()
	var ls []*Layout
	for _, l := range liveCopies.by {
		if !slices.Contains(ls, l) {
			ls = append(ls, l)
		}
	}
	liveCopies.Unlock()
	for _, l := range ls {
		l.Close()
	}
}

// letGo prepares the pages of the laid-out tree to be read after it runs
// again (see above), then lets go of every process that needs no more
// holding. It runs while the tree is frozen, before Lay returns.
func (l *Layout) letGo(ctx context.Context, opt *Options) error {
	bytes := make(map[int]int64) // deferred page bytes, by process
	for _, s := range l.segs {
		if s.kind == segPages {
			bytes[s.pid] += s.n
		}
	}
	pids := make([]int, 0, len(bytes))
	for pid := range bytes {
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	l.copies = make(map[int]*memCopy)
	l.held = make(map[int]bool)
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return taskErr(pid, "copy memory", err)
		}
		if opt.Hold {
			l.held[pid] = true
			continue
		}
		hold := func(why error) {
			// Frozen it stays, and its pages are read from it.
			l.held[pid] = true
			opt.logf("checkpoint: pid %d stays frozen until its image is read: %v", pid, why)
		}
		if bytes[pid] < smallProcess {
			if !l.budget.take(bytes[pid]) {
				hold(fmt.Errorf("its %d KiB of pages would go over the snapshot's limit on duplicated memory", bytes[pid]>>10))
				continue
			}
			if err := l.readNow(pid, nil); err != nil {
				return err
			}
			continue
		}
		mc, err := l.fork(pid)
		if err != nil {
			hold(err)
			continue
		}
		// What the copy does not share with the process is read now.
		unshared, err := mc.unshared(l.segs)
		if err == nil && unshared.bytes > 0 && !l.budget.take(unshared.bytes) {
			err = fmt.Errorf("the %d KiB of pages of its MADV_WIPEONFORK or MADV_DONTFORK mappings would go over the snapshot's limit on duplicated memory", unshared.bytes>>10)
		}
		if err == nil {
			err = l.readNow(pid, unshared.segs)
		}
		if err != nil {
			l.endCopy(mc)
			hold(err)
			continue
		}
		l.copies[pid] = mc
	}
	l.res.Copies = len(l.copies)
	l.res.Held = len(l.held)
	// Everything not held runs on.
	l.f.letGo(func(tgid int) bool { return !l.held[tgid] })
	if len(l.held) == 0 {
		l.res.Frozen = l.f.frozenFor()
		l.released = time.Now()
	}
	fault.Point("checkpoint-copied")
	return nil
}

// unsharedSegs are the deferred page segments of a process that its copy
// does not hold.
type unsharedSegs struct {
	segs  map[int]bool // by index in the layout
	bytes int64
}

// unshared finds the deferred pages of mc's process that the copy does not
// hold: those of mappings made MADV_WIPEONFORK (the copy has them empty)
// or MADV_DONTFORK (it has no such mapping). Fork copies the page table
// entries of every other mapping that can hold such pages, so a page the
// process has (present or swapped) is one the copy has too, unless its
// mapping is one of those: one entry of the copy's pagemap per segment
// tells, where reading the process's smaps for its flags would walk its
// every page.
func (mc *memCopy) unshared(segs []segment) (unsharedSegs, error) {
	u := unsharedSegs{segs: make(map[int]bool)}
	pm, err := procfs.OpenPagemap(mc.c.Tid)
	if err != nil {
		return u, fmt.Errorf("its copy's pagemap: %w", err)
	}
	defer pm.Close()
	ps := unix.Getpagesize()
	entry := make([]uint64, 1)
	for i, s := range segs {
		if s.kind != segPages || s.pid != mc.tgid {
			continue
		}
		if err := pm.Read(s.addr, ps, entry); err != nil {
			return u, fmt.Errorf("its copy's pagemap at %#x: %w", s.addr, err)
		}
		if entry[0]&(procfs.PagePresent|procfs.PageSwapped) == 0 {
			u.segs[i] = true
			u.bytes += s.n
		}
	}
	return u, nil
}

// readNow reads deferred pages of process pid from the frozen process into
// the layout's memory: the segments only (by index), or all of them for
// nil. (The budget has been asked for them.)
func (l *Layout) readNow(pid int, only map[int]bool) error {
	for i := range l.segs {
		s := &l.segs[i]
		if s.kind != segPages || s.pid != pid || only != nil && !only[i] {
			continue
		}
		at := len(l.lit)
		l.lit = append(l.lit, make([]byte, s.n)...)
		if err := readMemory(l.lit[at:], s.pid, s.addr); err != nil {
			return err
		}
		s.kind, s.lit = segLiteral, int64(at)
		l.res.CopiedBytes += s.n
	}
	return nil
}

// fork makes process pid fork a copy of itself, from a thread of it the
// freeze holds.
func (l *Layout) fork(pid int) (*memCopy, error) {
	stat, err := procfs.ReadStat(pid)
	if err != nil {
		return nil, err
	}
	tid := 0
	for _, t := range l.f.tasks {
		if t.tgid == pid && l.f.seized[t.tid] {
			tid = t.tid
			break
		}
	}
	if tid == 0 {
		return nil, errors.New("no thread of it is held")
	}
	mc := &memCopy{tgid: pid, start: stat.StartTime}
	err = l.f.tr.Do(func() error {
		space, err := inject.NewSpace(pid)
		if err != nil {
			return err
		}
		task, err := inject.GuardFork(space, tid)
		if err != nil {
			return err
		}
		mc.c, err = task.Fork()
		if rerr := task.Restore(); rerr != nil {
			if mc.c != nil {
				inject.EndCopy(mc.c)
				mc.c = nil
			}
			return errors.Join(err, rerr)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fork a copy of its memory: %w", err)
	}
	// The first the kernel's OOM killer takes, should the duplicated pages
	// run a cgroup or the machine short: the snapshot, not the tree.
	setOOMScore(mc.c.Tid)
	if mc.mem, err = procfs.OpenMem(mc.c.Tid, os.O_RDONLY); err != nil {
		l.f.tr.Do(func() error { inject.EndCopy(mc.c); return nil })
		return nil, fmt.Errorf("open its copy's memory: %w", err)
	}
	mc.minflt = stat.MinFlt
	liveCopies.Lock()
	liveCopies.by[mc.c.Tid] = l
	liveCopies.Unlock()
	return mc, nil
}

// setOOMScore makes a copy the OOM killer's first choice (raising a
// score needs no privilege).
func setOOMScore(tid int) {
	procfs.WriteOOMScoreAdj(tid, 1000)
}

// read reads len(p) bytes at addr of the memory copy mc holds: the
// process's as it was at the fork.
func (mc *memCopy) read(p []byte, addr uint64) error {
	for done := 0; done < len(p); {
		n, err := mc.mem.ReadAt(p[done:], int64(addr)+int64(done))
		switch {
		case errors.Is(err, unix.ESRCH) || errors.Is(err, io.EOF) && n == 0:
			return taskErr(mc.tgid, fmt.Sprintf("read its memory's copy %d at %#x", mc.c.Tid, addr), ErrGone)
		case err != nil && !errors.Is(err, io.EOF):
			// Not wrapped: whatever the errno, the reader gets EIO.
			return taskErr(mc.tgid, "read memory", fmt.Errorf("its copy %d at %#x: %v", mc.c.Tid, addr+uint64(done), err))
		}
		done += n
	}
	// The guard's area held other bytes before the fork.
	lo, hi := max(addr, mc.c.Scratch), min(addr+uint64(len(p)), mc.c.Scratch+uint64(len(mc.c.Saved)))
	if lo < hi {
		copy(p[lo-addr:hi-addr], mc.c.Saved[lo-mc.c.Scratch:])
	}
	return nil
}

// endCopies ends every copy of the layout (endCopy). It runs once, from
// Close.
func (l *Layout) endCopies() {
	for _, mc := range l.copies {
		l.endCopy(mc)
	}
}

// endCopy ends a copy, which its own process then reaps (see reap).
func (l *Layout) endCopy(mc *memCopy) {
	mc.mem.Close()
	l.f.tr.Do(func() error {
		inject.EndCopy(mc.c)
		return nil
	})
	liveCopies.Lock()
	delete(liveCopies.by, mc.c.Tid)
	liveCopies.Unlock()
	if err := l.reap(mc); err != nil {
		l.opt.logf("checkpoint: pid %d: its copy %d is left a zombie until it exits or waits for it: %v", mc.tgid, mc.c.Tid, err)
	}
}

// reap makes the process of an ended copy reap it, as only a parent can
// (see reapChild). A process that exited meanwhile gave the copy to its
// reaper, which took care of it.
func (l *Layout) reap(mc *memCopy) error {
	if st, err := procfs.ReadStat(mc.tgid); err != nil || st.StartTime != mc.start {
		return nil
	}
	return l.f.tr.Do(func() error { return reapChild(mc.tgid, mc.c.Tid, mc.c.Local, l.opt.stopTimeout()) })
}

// reapChild makes process tgid reap its zombie child (child in our pid
// namespace, local in the process's), if it still has it: one of its
// threads is stopped for a moment and calls wait4 on it, guarded, so that
// the daemon's death changes nothing. A thread a freeze of ours holds is
// stopped already; another is seized, stopped and let go again. It runs
// on a tracer's thread.
func reapChild(tgid, child, local int, timeout time.Duration) error {
	if cst, err := procfs.ReadStat(child); err != nil || cst.PPid != tgid {
		return nil // reaped already, or no longer the process's
	}
	tids, err := procfs.Threads(tgid)
	if err != nil {
		return nil // gone
	}
	var errs []error
	for _, tid := range tids {
		err := reapFrom(tgid, tid, local, timeout)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
	}
	return errors.Join(errs...)
}

// reapFrom makes thread tid of process tgid call wait4(local, __WALL).
func reapFrom(tgid, tid, local int, timeout time.Duration) error {
	if ptrace.Seize(tid, seizeOptions) == nil {
		defer ptrace.Detach(tid, 0)
		if err := stopForCall(tid, timeout); err != nil {
			return err
		}
	}
	space, err := inject.NewSpace(tgid)
	if err != nil {
		return err
	}
	task, err := inject.Guard(space, tid)
	if err != nil {
		return err
	}
	got, err := task.Syscall(unix.SYS_WAIT4, uint64(local), 0, unix.WNOHANG|unix.WALL, 0)
	if rerr := task.Restore(); err == nil {
		err = rerr
	}
	if err == nil && int(got) != local {
		err = fmt.Errorf("wait4(%d) in the process returned %d", local, got)
	}
	return err
}

// lostCopy reports whether pid is a copy that a dead tracer let go (see
// inject.IsLostCopy): the zombie it became is no process of the tree.
func lostCopy(pid int) bool {
	st, err := procfs.ReadStat(pid)
	return err == nil && st.State == 'Z' && inject.IsLostCopy(st.ExitSignal, st.ExitCode)
}

// ReapLostCopies finds the copies a daemon that died left as zombies (see
// inject.Copy) and makes their processes reap them. A daemon calls it as
// it starts. It returns how many it reaped, and what went wrong.
func ReapLostCopies() (int, error) {
	pids, err := procfs.Pids()
	if err != nil {
		return 0, err
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	n := 0
	var errs []error
	for _, pid := range pids {
		if !lostCopy(pid) {
			continue
		}
		st, err := procfs.ReadStatus(pid)
		if err != nil || len(st.NSpid) == 0 {
			continue
		}
		local := st.NSpid[len(st.NSpid)-1]
		err = tr.Do(func() error { return reapChild(st.PPid, pid, local, 5*time.Second) })
		if err != nil {
			errs = append(errs, fmt.Errorf("copy %d of pid %d: %w", pid, st.PPid, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// stopForCall interrupts a seized task and waits for it to stop; a signal
// on its way is delivered first (as the freeze does, see waitStopped).
func stopForCall(tid int, timeout time.Duration) error {
	if err := ptrace.Interrupt(tid); err != nil {
		return err
	}
	for range 64 {
		stop, err := ptrace.WaitStop(context.Background(), tid, timeout)
		switch {
		case err != nil:
			return err
		case stop.Exited:
			return ErrVanished
		case stop.Signal == 0:
			return nil
		}
		if err := ptrace.Interrupt(tid); err != nil {
			return err
		}
		if err := unix.PtraceCont(tid, stop.Signal); err != nil {
			return err
		}
	}
	return fmt.Errorf("signals keep arriving: %w", ErrStuck)
}
