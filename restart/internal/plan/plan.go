// Package plan decides how restart rebuilds the process forest of a
// checkpoint image, and proves it on a model of the kernel before any
// process is made.
//
// Make is a pure function from an image's PIDS and TREE sections (and the
// exit status of its zombies) to a Plan: a sequential list of steps
// (clone, setsid, setpgid, exit, wait...) that, run one at a time by the
// processes named in them, recreates every task with its pid numbers in
// every namespace, its parent, thread group, process group and session,
// and leaves the zombies unreaped. Package restart runs the steps on the
// kernel. Model is a simulation of the kernel's rules: Make checks its own
// output on it before returning, and the tests check the planner against it.
//
// Names, one per concept: a Proc is a process of a plan (a task of the
// image, a ghost, a placeholder, or the restorer); node is the planner's
// working record of a Proc while it decides; a Task is a task of the
// kernel model. (Package restart calls the live process it drives a proc.)
//
// The algorithm descends from the MakeForest algorithm of linux-cr's
// user-space restart tool, extended to pid namespaces as objects (a tree of
// namespaces rather than a chain), to dead process group leaders, and to
// child subreapers. See makeforest.go.
package plan

import (
	"fmt"

	"github.com/ckptfs/ckptfs/image"
)

// Forest is the part of an image that Make rebuilds: the pid objects,
// the task tree, and the wait status of every zombie task (by pid tag). It is
// both Make's input and Execute's output.
type Forest struct {
	Mode    image.Mode
	Pids    image.Pids
	Tree    image.Tree
	Zombies map[image.Tag]int32
}

// ForestOf extracts the forest of an image: its pids, its tree, and the
// zombies found among its per-task records (state 'Z', with their wait
// status).
func ForestOf(img *image.Image) Forest {
	f := Forest{Mode: img.Header.Mode, Pids: img.Pids, Tree: img.Tree, Zombies: map[image.Tag]int32{}}
	for _, t := range img.Tasks {
		if t.State == 'Z' {
			f.Zombies[t.Pid] = t.ExitCode
		}
	}
	return f
}

// ProcID names a process of a plan: an index into Plan.Procs. The restorer,
// the process that runs the restart, is always ProcID 0.
type ProcID int

// Restorer is the ProcID of the restorer.
const Restorer ProcID = 0

// ProcKind says what a process of a plan is.
type ProcKind uint8

const (
	// KindRestorer is the process running the restart, outside the tree.
	// Its session and process group stand for the image's TagRoot and
	// TagAncestor. In subtree mode it lives in the root's namespace (tag 1)
	// and is a child subreaper; in container mode it lives in the parent of
	// the namespace it creates.
	KindRestorer ProcKind = iota
	// KindTask is a task of the image (a process or a thread).
	KindTask
	// KindGhost is a dead session or process group leader whose pid is still
	// in use: it is created with that pid, leads its session or group while
	// the forest is built, then exits and is reaped by its parent.
	KindGhost
	// KindPlaceholder is a short-lived helper with no fixed pid: it creates
	// one task and exits at once, so that the task is reparented to a
	// subreaper or namespace init.
	KindPlaceholder
)

func (k ProcKind) String() string {
	switch k {
	case KindRestorer:
		return "restorer"
	case KindTask:
		return "task"
	case KindGhost:
		return "ghost"
	case KindPlaceholder:
		return "placeholder"
	}
	return "?"
}

// Proc is a process of a plan.
type Proc struct {
	Kind ProcKind
	// Tag is the pid object of a task or ghost (0 for the restorer and
	// placeholders).
	Tag image.Tag
	// NS is the namespace the process lives in: the innermost level of its
	// pid. 0 means outside the image (the restorer in container mode).
	NS image.Tag
	// NSpid is the process's pid from the root's namespace inwards (as
	// /proc/<pid>/status shows it); for a placeholder, the numbers the plan
	// chose for it.
	NSpid []int32
	// Zombie and Status: a task that exits with this wait status and stays
	// unreaped.
	Zombie bool
	Status int32
	// Thread: a task that is not its thread group's leader.
	Thread bool
}

// Step is one action of a plan, performed by one process (its actor) while
// every other process of the plan waits. The concrete types are Clone,
// Setsid, Setpgid, Subreaper, Exit and Wait.
type Step interface {
	ActorID() ProcID
}

// Clone: the actor creates Child with clone3. Flags may hold CLONE_FILES
// and CLONE_FS when the child shares the actor's descriptor table or fs
// struct (see plan_sharing.go).
//
// NS is the child's namespace. With CloneNewPID it is the new namespace, whose
// parent is the actor's own namespace. Otherwise, if NS is not the actor's
// own namespace it is a descendant of it, and the executor first points the
// actor's pid_for_children at it (setns(2) on a CLONE_NEWPID file of that
// namespace) and restores it after the clone; the child's parent is still
// the actor. SetTid is clone3's set_tid, innermost level first: SetTid[0] is
// the pid in NS and the last entry the pid in the root's namespace (levels
// above the image are left to the kernel). A placeholder's numbers are
// chosen unused by the image: if one is taken on the live system, any other
// number unused by the image will do, since nothing refers to it.
type Clone struct {
	Actor  ProcID
	Child  ProcID
	Flags  CloneFlags
	NS     image.Tag
	SetTid []int32
}

// Setsid: the actor calls setsid(2) and so leads a new session and group.
type Setsid struct {
	Actor ProcID
}

// Setpgid: the actor calls setpgid(Pid, PGid). Target is the process moved:
// the actor itself (Pid 0) or its child (Pid is the child's number in the
// actor's namespace). Group is the pid tag of the group (TagRoot for the
// restorer's group); PGid is its number in the actor's namespace, 0 when the
// target creates its own group.
type Setpgid struct {
	Actor  ProcID
	Target ProcID
	Group  image.Tag
	Pid    int32
	PGid   int32
}

// Subreaper: the actor calls prctl(PR_SET_CHILD_SUBREAPER, On). The planner
// turns it on only around a placeholder's exit, to catch the orphan; the
// task's real flag is part of its state, put back later.
type Subreaper struct {
	Actor ProcID
	On    bool
}

// Exit: the actor exits with the wait status Status: status>>8 through
// exit_group when the low 7 bits are 0, else death by that signal. Ghosts
// and placeholders exit with 0 and are reaped by a Wait step; a zombie task
// exits with its recorded status and is never reaped.
type Exit struct {
	Actor  ProcID
	Status int32
}

// Wait: the actor reaps its exited child Child, whose pid in the actor's
// namespace is Pid (waitid(P_PID, Pid, WEXITED)).
type Wait struct {
	Actor ProcID
	Child ProcID
	Pid   int32
}

func (s Clone) ActorID() ProcID     { return s.Actor }
func (s Setsid) ActorID() ProcID    { return s.Actor }
func (s Setpgid) ActorID() ProcID   { return s.Actor }
func (s Subreaper) ActorID() ProcID { return s.Actor }
func (s Exit) ActorID() ProcID      { return s.Actor }
func (s Wait) ActorID() ProcID      { return s.Actor }

// Outer says how much of the session and group from above a subtree is
// visible in the root's pid namespace. A group lies within its session, so a
// visible session with a hidden group is not a case (Make refuses it).
type Outer uint8

const (
	OuterHidden  Outer = iota // both from an ancestor namespace, or unused
	OuterGroup                // the group is visible, the session is not
	OuterSession              // both are visible
)

// Plan is a creation plan for a forest.
type Plan struct {
	Forest Forest
	// Outer says which of the restorer's group and session, those of the
	// root's ancestors, are visible in the root's namespace (the image says
	// TagRoot) rather than lying in an ancestor namespace (TagAncestor).
	Outer Outer
	Procs []Proc // Procs[0] is the restorer
	Steps []Step
	// ByTag maps a task's or ghost's pid tag to its process.
	ByTag map[image.Tag]ProcID
	// Root is the root task.
	Root ProcID
	// RestoredLater maps each process whose descriptor table or fs struct
	// (image.TaskSharesFiles, TaskSharesFS) a later process of TREE order
	// shares to those flags: its own records must not put them back, the
	// last sharer's do, once every sharer's memory is in place.
	RestoredLater map[image.Tag]image.TaskFlags
}

// CheckZombie refuses a task the image turns out to make a zombie (its
// TASK record says so, after the plan was made) that was planned to share
// its parent's descriptor table or fs struct: a zombie holds none, and as
// the last sharer it would leave them unrestored.
func (p *Plan) CheckZombie(tag image.Tag) error {
	for _, t := range p.Forest.Tree.Tasks {
		if t.Pid == tag && t.Flags != 0 {
			return fmt.Errorf("%w: zombie %s shares its parent's %s, which a zombie does not hold",
				ErrRefused, p.ProcName(p.ByTag[tag]), sharesText(t.Flags))
		}
	}
	return nil
}
