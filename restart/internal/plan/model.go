package plan

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// This file is a small simulation of the kernel's process bookkeeping: pid
// namespaces, struct pid objects, parents, process groups, sessions, thread
// groups, zombies and child subreapers. It implements exactly the rules the
// planner depends on (clone3 with set_tid, setsid, setpgid, exit with
// reparenting and namespace teardown, wait) and fails with the errno the
// kernel would return, so that a plan can be proved on it without a kernel.
// Citations are to the kernel functions whose checks are reproduced.

// CloneFlags are the clone flags a plan uses, with the kernel's values.
type CloneFlags uint64

const (
	CloneFS     CloneFlags = 0x00000200 // CLONE_FS
	CloneFiles  CloneFlags = 0x00000400 // CLONE_FILES
	CloneParent CloneFlags = 0x00008000 // CLONE_PARENT
	CloneThread CloneFlags = 0x00010000 // CLONE_THREAD
	CloneNewPID CloneFlags = 0x20000000 // CLONE_NEWPID
)

func (f CloneFlags) String() string {
	s := ""
	add := func(flag CloneFlags, name string) {
		if f&flag != 0 {
			if s != "" {
				s += "|"
			}
			s += name
		}
	}
	add(CloneFS, "CLONE_FS")
	add(CloneFiles, "CLONE_FILES")
	add(CloneParent, "CLONE_PARENT")
	add(CloneThread, "CLONE_THREAD")
	add(CloneNewPID, "CLONE_NEWPID")
	if s == "" {
		return "0"
	}
	return s
}

const pidMax = 4194304 // PID_MAX_LIMIT on 64-bit

// Namespace is a pid namespace of the model.
type Namespace struct {
	Parent *Namespace
	Level  int   // 0 for the model's initial namespace
	Init   *Task // the child reaper (pid 1); nil before it exists
	dead   bool  // the init exited: no pid can be allocated any more
	last   int32 // cursor of the cyclic allocator (idr_alloc_cyclic)
	id     int
}

// IsAncestorOf reports whether ns is d or one of d's ancestors.
func (ns *Namespace) IsAncestorOf(d *Namespace) bool {
	for ; d != nil; d = d.Parent {
		if d == ns {
			return true
		}
	}
	return false
}

// pidNum is the number of a struct pid in one namespace.
type pidNum struct {
	ns *Namespace
	nr int32
}

// pidObj is a struct pid: its number at every level from the model's
// initial namespace down to the namespace it was allocated in.
type pidObj struct {
	nums []pidNum
}

// nrIn is the pid's number as seen from ns, 0 if it is not visible there.
func (p *pidObj) nrIn(ns *Namespace) int32 {
	if p == nil || ns.Level >= len(p.nums) || p.nums[ns.Level].ns != ns {
		return 0
	}
	return p.nums[ns.Level].nr
}

// ProcState is the life state of a model process.
type ProcState uint8

const (
	Alive  ProcState = iota
	Zombie           // exited, not yet reaped: still holds its pid
	Reaped           // gone
)

// Task is a task of the model: a thread group leader or a thread.
type Task struct {
	Name      string // for messages
	pid       *pidObj
	NS        *Namespace // active pid namespace
	Parent    *Task      // real parent, always a thread group leader
	Leader    *Task      // thread group leader; itself for a leader
	pgrp      *pidObj
	session   *pidObj
	State     ProcState
	Status    int32 // wait status once a zombie
	Subreaper bool  // PR_SET_CHILD_SUBREAPER
	children  []*Task
	threads   []*Task
	// files and fs are the descriptor table and fs struct the task holds,
	// shared by clone with CLONE_FILES and CLONE_FS (a thread always
	// shares its creator's, as the executor asks); nil once it exited.
	files, fs *struct{ id int }
}

// SharesFiles and SharesFS report whether p and q hold the same descriptor
// table or fs struct (two tasks that exited hold none).
func (p *Task) SharesFiles(q *Task) bool { return p.files != nil && p.files == q.files }
func (p *Task) SharesFS(q *Task) bool    { return p.fs != nil && p.fs == q.fs }

// Nr is p's pid as seen from ns, 0 if not visible.
func (p *Task) Nr(ns *Namespace) int32 { return p.pid.nrIn(ns) }

// NSpid lists p's pid from the model's initial namespace inwards.
func (p *Task) NSpid() []int32 {
	out := make([]int32, len(p.pid.nums))
	for i, n := range p.pid.nums {
		out[i] = n.nr
	}
	return out
}

// PGid and Sid are p's process group and session as seen from ns (0 when
// not visible there, as getpgid(2) would report).
func (p *Task) PGid(ns *Namespace) int32 { return p.pgrp.nrIn(ns) }
func (p *Task) Sid(ns *Namespace) int32  { return p.session.nrIn(ns) }

// Children lists p's children that are not reaped.
func (p *Task) Children() []*Task { return p.children }

// Threads lists p's threads other than itself.
func (p *Task) Threads() []*Task { return p.threads }

func (p *Task) isLeader() bool { return p.Leader == p }

// isSessionLeader is signal->leader: p created its session.
func (p *Task) isSessionLeader() bool { return p.session == p.pid }

func (p *Task) String() string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprintf("process %v", p.NSpid())
}

// Model is the simulated kernel.
type Model struct {
	Root  *Namespace
	procs []*Task // every process ever created, reaped ones included
	nss   []*Namespace
	objs  int // descriptor tables and fs structs made
}

// NewModel returns a model holding one namespace and its init, pid 1, which
// leads its own session and group.
func NewModel() (*Model, *Task) {
	m := &Model{}
	m.Root = m.newNS(nil)
	init := &Task{Name: "init", NS: m.Root}
	init.pid = &pidObj{nums: []pidNum{{m.Root, 1}}}
	init.Leader = init
	init.pgrp, init.session = init.pid, init.pid
	init.files, init.fs = m.newShared(), m.newShared()
	m.Root.Init = init
	m.Root.last = 1
	m.procs = append(m.procs, init)
	return m, init
}

func (m *Model) newNS(parent *Namespace) *Namespace {
	ns := &Namespace{Parent: parent, id: len(m.nss)}
	if parent != nil {
		ns.Level = parent.Level + 1
	}
	m.nss = append(m.nss, ns)
	return ns
}

// newShared makes a descriptor table or fs struct.
func (m *Model) newShared() *struct{ id int } {
	m.objs++
	return &struct{ id int }{m.objs}
}

// Processes lists every process not reaped, in creation order.
func (m *Model) Processes() []*Task {
	var out []*Task
	for _, p := range m.procs {
		if p.State != Reaped {
			out = append(out, p)
		}
	}
	return out
}

func errno(e unix.Errno, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), e)
}

// inUse reports whether nr is taken in ns: a struct pid stays allocated while
// any task uses it as its pid, thread group, process group or session
// (free_pid runs only when the last of those links is detached).
func (m *Model) inUse(ns *Namespace, nr int32) bool {
	return m.findPid(ns, nr) != nil
}

// findPid is find_vpid: the struct pid numbered nr in ns, if allocated.
func (m *Model) findPid(ns *Namespace, nr int32) *pidObj {
	for _, p := range m.procs {
		if p.State == Reaped {
			continue
		}
		for _, o := range []*pidObj{p.pid, p.pgrp, p.session} {
			if o.nrIn(ns) == nr {
				return o
			}
		}
	}
	return nil
}

// findTask is find_task_by_vpid: the task whose own pid is nr in ns.
func (m *Model) findTask(ns *Namespace, nr int32) *Task {
	for _, p := range m.procs {
		if p.State != Reaped && p.pid.nrIn(ns) == nr {
			return p
		}
	}
	return nil
}

// groupMember is pid_task(pgrp, PIDTYPE_PGID): any task in the group.
func (m *Model) groupMember(pgrp *pidObj) *Task {
	for _, p := range m.procs {
		if p.State != Reaped && p.isLeader() && p.pgrp == pgrp {
			return p
		}
	}
	return nil
}

// alloc picks the number of a new pid in ns: the requested one (set_tid) or
// the next free one after the cursor. Requested numbers do not move the
// cursor, as in alloc_pid.
func (m *Model) alloc(ns *Namespace, want int32) (int32, error) {
	if ns.dead {
		return 0, errno(unix.ENOMEM, "namespace level %d is dead (its init exited)", ns.Level)
	}
	if want != 0 {
		if want < 0 || want >= pidMax {
			return 0, errno(unix.EINVAL, "set_tid %d out of range", want)
		}
		// alloc_pid: "fail if a PID != 1 is requested and no PID 1 exists".
		if want != 1 && ns.Init == nil {
			return 0, errno(unix.EINVAL, "set_tid %d in a namespace without init", want)
		}
		if m.inUse(ns, want) {
			return 0, errno(unix.EEXIST, "pid %d is taken in namespace level %d", want, ns.Level)
		}
		return want, nil
	}
	if ns.Init == nil {
		if m.inUse(ns, 1) {
			return 0, errno(unix.EEXIST, "pid 1 is taken")
		}
		ns.last = 1
		return 1, nil
	}
	nr := ns.last
	for range pidMax {
		nr++
		if nr >= pidMax {
			nr = 2 // RESERVED_PIDS is 300 in the root namespace; irrelevant here
		}
		if !m.inUse(ns, nr) {
			ns.last = nr
			return nr, nil
		}
	}
	return 0, errno(unix.EAGAIN, "no free pid in namespace level %d", ns.Level)
}

// Clone creates a task as clone3 would. pfc is the actor's
// pid_for_children (nil: its own namespace; a descendant namespace models a
// preceding setns). setTid is clone3's set_tid, innermost level first.
func (m *Model) Clone(actor *Task, flags CloneFlags, pfc *Namespace, setTid []int32) (*Task, error) {
	if actor.State != Alive {
		return nil, errno(unix.ESRCH, "clone by %s: not alive", actor)
	}
	if pfc == nil {
		pfc = actor.NS
	}
	if !actor.NS.IsAncestorOf(pfc) {
		// setns(CLONE_NEWPID) only enters descendants of the active namespace.
		return nil, errno(unix.EINVAL, "clone by %s: pid_for_children is not below its namespace", actor)
	}
	if flags&CloneThread != 0 && flags&CloneNewPID != 0 {
		return nil, errno(unix.EINVAL, "clone by %s: CLONE_THREAD with CLONE_NEWPID", actor)
	}
	// copy_process: a thread needs pid_for_children == active namespace.
	if flags&CloneThread != 0 && pfc != actor.NS {
		return nil, errno(unix.EINVAL, "clone by %s: CLONE_THREAD after setns", actor)
	}
	leader := actor.Leader
	// copy_process: "siblings of global init remain as zombies on exit since
	// they are not reaped by their parent (swapper)"; and a namespace init
	// (SIGNAL_UNKILLABLE) may not create siblings outside its namespace.
	if flags&CloneParent != 0 && leader.NS.Init == leader {
		return nil, errno(unix.EINVAL, "clone by %s: CLONE_PARENT from a namespace init", actor)
	}
	childNS := pfc
	if flags&CloneNewPID != 0 {
		// copy_pid_ns: the new namespace's parent must be the active one.
		if pfc != actor.NS {
			return nil, errno(unix.EINVAL, "clone by %s: CLONE_NEWPID after setns", actor)
		}
		if pfc.Level+1 > 32 {
			return nil, errno(unix.ENOSPC, "clone by %s: pid namespaces nested too deep", actor)
		}
		childNS = nil // created below, once the numbers are known to be free
	}
	level := pfc.Level
	if childNS == nil {
		level++
	}
	if len(setTid) > level+1 {
		return nil, errno(unix.EINVAL, "clone by %s: %d set_tid entries for %d levels", actor, len(setTid), level+1)
	}
	// Allocate innermost first, as alloc_pid does.
	nums := make([]pidNum, level+1)
	var newNS *Namespace
	for i := 0; i <= level; i++ {
		lv := level - i
		var ns *Namespace
		if lv == level && childNS == nil {
			newNS = m.newNS(pfc)
			ns = newNS
		} else {
			ns = pfc
			for ns.Level > lv {
				ns = ns.Parent
			}
		}
		var want int32
		if i < len(setTid) {
			want = setTid[i]
			if want <= 0 {
				return nil, errno(unix.EINVAL, "clone by %s: set_tid[%d] = %d", actor, i, want)
			}
		}
		nr, err := m.alloc(ns, want)
		if err != nil {
			if newNS != nil {
				m.nss = m.nss[:len(m.nss)-1]
			}
			return nil, fmt.Errorf("clone by %s: %w", actor, err)
		}
		nums[lv] = pidNum{ns, nr}
	}
	if newNS != nil {
		childNS = newNS
	}
	c := &Task{pid: &pidObj{nums: nums}, NS: childNS, pgrp: leader.pgrp, session: leader.session}
	// copy_files, copy_fs: shared with the calling task, else a copy.
	c.files, c.fs = m.newShared(), m.newShared()
	if flags&(CloneFiles|CloneThread) != 0 {
		c.files = actor.files
	}
	if flags&(CloneFS|CloneThread) != 0 {
		c.fs = actor.fs
	}
	switch {
	case flags&CloneThread != 0:
		c.Leader = leader
		c.Parent = leader.Parent
		leader.threads = append(leader.threads, c)
	case flags&CloneParent != 0:
		c.Leader = c
		c.Parent = leader.Parent
		c.Parent.children = append(c.Parent.children, c)
	default:
		c.Leader = c
		c.Parent = leader
		leader.children = append(leader.children, c)
	}
	if newNS != nil {
		newNS.Init = c
		newNS.last = 1
	}
	m.procs = append(m.procs, c)
	return c, nil
}

// Setsid is setsid(2) by p's thread group.
func (m *Model) Setsid(p *Task) error {
	if p.State != Alive {
		return errno(unix.ESRCH, "setsid by %s: not alive", p)
	}
	g := p.Leader
	// ksys_setsid: "Fail if group_leader is already a process group leader"
	// (any task still using its pid as a group, a zombie included).
	if m.groupMember(g.pid) != nil {
		return errno(unix.EPERM, "setsid by %s: it is a process group leader", p)
	}
	g.session, g.pgrp = g.pid, g.pid
	for _, t := range g.threads {
		t.session, t.pgrp = g.pid, g.pid
	}
	return nil
}

// Setpgid is setpgid(pid, pgid) called by actor; the numbers are as the
// actor sees them, 0 meaning "the caller" and "the target's own pid".
func (m *Model) Setpgid(actor *Task, pid, pgid int32) error {
	if actor.State != Alive {
		return errno(unix.ESRCH, "setpgid by %s: not alive", actor)
	}
	me := actor.Leader
	ns := actor.NS
	if pid == 0 {
		pid = me.Nr(ns)
	}
	if pgid == 0 {
		pgid = pid
	}
	if pgid < 0 {
		return errno(unix.EINVAL, "setpgid(%d, %d) by %s", pid, pgid, actor)
	}
	p := m.findTask(ns, pid)
	if p == nil {
		return errno(unix.ESRCH, "setpgid(%d, %d) by %s: no such task", pid, pgid, actor)
	}
	if !p.isLeader() {
		return errno(unix.EINVAL, "setpgid(%d, %d) by %s: a thread", pid, pgid, actor)
	}
	if p.Parent == me {
		if p.session != me.session {
			return errno(unix.EPERM, "setpgid(%d, %d) by %s: child %s is in another session", pid, pgid, actor, p)
		}
	} else if p != me {
		return errno(unix.ESRCH, "setpgid(%d, %d) by %s: %s is neither the caller nor its child", pid, pgid, actor, p)
	}
	if p.isSessionLeader() {
		return errno(unix.EPERM, "setpgid(%d, %d) by %s: %s is a session leader", pid, pgid, actor, p)
	}
	pgrp := p.pid
	if pgid != pid {
		pgrp = m.findPid(ns, pgid)
		g := m.groupMember(pgrp)
		if pgrp == nil || g == nil || g.session != p.session {
			return errno(unix.EPERM, "setpgid(%d, %d) by %s: no such group in the session of %s", pid, pgid, actor, p)
		}
	}
	p.pgrp = pgrp
	for _, t := range p.threads {
		t.pgrp = pgrp
	}
	return nil
}

// SetSubreaper is prctl(PR_SET_CHILD_SUBREAPER, on).
func (m *Model) SetSubreaper(p *Task, on bool) error {
	if p.State != Alive {
		return errno(unix.ESRCH, "prctl by %s: not alive", p)
	}
	p.Leader.Subreaper = on
	return nil
}

// Exit is exit_group(2) (or death by a signal) of p's thread group with the
// given wait status. The threads go at once; the leader stays a zombie until
// its parent reaps it. Children go to the new reaper; if p is a namespace
// init, every other task of its namespace is killed and reaped.
func (m *Model) Exit(p *Task, status int32) error {
	if p.State != Alive {
		return errno(unix.ESRCH, "exit of %s: not alive", p)
	}
	g := p.Leader
	for _, t := range g.threads {
		t.State = Reaped // a non-leader thread is released on exit
		t.files, t.fs = nil, nil
	}
	g.files, g.fs = nil, nil // exit_files, exit_fs
	g.threads = nil
	if g.NS.Init == g {
		// zap_pid_ns_processes: SIGKILL everything below and reap it.
		for _, q := range m.procs {
			if q != g && q.State != Reaped && q.pid.nrIn(g.NS) != 0 {
				m.release(q)
			}
		}
		g.NS.dead = true
	} else {
		reaper := m.findNewReaper(g)
		for _, c := range g.children {
			c.Parent = reaper
			reaper.children = append(reaper.children, c)
		}
	}
	g.children = nil
	g.State, g.Status = Zombie, status
	g.Subreaper = false
	return nil
}

// release removes q from the model, as release_task would.
func (m *Model) release(q *Task) {
	q.State = Reaped
	q.files, q.fs = nil, nil
	if q.Parent != nil {
		ch := q.Parent.children[:0]
		for _, c := range q.Parent.children {
			if c != q {
				ch = append(ch, c)
			}
		}
		q.Parent.children = ch
	}
}

// findNewReaper is find_new_reaper: the nearest living child subreaper among
// the ancestors in the same pid namespace (compared by level, as the kernel
// does), else the namespace's init.
func (m *Model) findNewReaper(father *Task) *Task {
	level := father.NS.Level
	for r := father.Parent; r != nil && r.NS.Level == level; r = r.Parent {
		if r.Subreaper && r.State == Alive {
			return r
		}
	}
	return father.NS.Init
}

// Wait is waitid(P_PID, pid, WEXITED) by actor: reaps its zombie child.
func (m *Model) Wait(actor *Task, pid int32) (int32, error) {
	if actor.State != Alive {
		return 0, errno(unix.ESRCH, "wait by %s: not alive", actor)
	}
	c := m.findTask(actor.NS, pid)
	if c == nil || c.Parent != actor.Leader || !c.isLeader() {
		return 0, errno(unix.ECHILD, "wait(%d) by %s: not its child", pid, actor)
	}
	if c.State != Zombie {
		return 0, errno(unix.EAGAIN, "wait(%d) by %s: %s has not exited (would block)", pid, actor, c)
	}
	m.release(c)
	return c.Status, nil
}
