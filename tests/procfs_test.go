package tests

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// truth is what /proc says about one task. Every pid is as the test's pid
// namespace (that of the mounted /proc) sees it, and the NS* lists run from
// that namespace down to the task's own, as /proc/<pid>/status prints them:
// a process group or session that is not visible in one of the task's
// namespaces is 0 at that level.
type truth struct {
	Tgid, Tid int
	NSpid     []int
	NStgid    []int
	NSpgid    []int
	NSsid     []int
	PPid      int // the parent process, in the test's namespace; 0 for none
	State     byte
	Comm      string
	ExitCode  int    // field 52 of stat: the wait status of a zombie
	PidNS     uint64 // inode of the task's pid namespace; 0 if unreadable (zombie)
}

// procTruth reads /proc/<pid>/status and stat of process pid.
func procTruth(pid int) (*truth, error) { return taskTruth(pid, pid) }

// taskTruth reads /proc/<tgid>/task/<tid>/{status,stat,comm,ns/pid}.
func taskTruth(tgid, tid int) (*truth, error) {
	dir := fmt.Sprintf("/proc/%d/task/%d", tgid, tid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return nil, err
	}
	tr := &truth{}
	ints := func(v string) ([]int, error) {
		var out []int
		for f := range strings.FieldsSeq(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("%s/status: %q: %w", dir, v, err)
			}
			out = append(out, n)
		}
		return out, nil
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "NSpid":
			tr.NSpid, err = ints(v)
		case "NStgid":
			tr.NStgid, err = ints(v)
		case "NSpgid":
			tr.NSpgid, err = ints(v)
		case "NSsid":
			tr.NSsid, err = ints(v)
		case "PPid":
			tr.PPid, err = strconv.Atoi(strings.TrimSpace(v))
		case "Tgid":
			tr.Tgid, err = strconv.Atoi(strings.TrimSpace(v))
		case "Pid":
			tr.Tid, err = strconv.Atoi(strings.TrimSpace(v))
		}
		if err != nil {
			return nil, err
		}
	}
	if len(tr.NSpid) == 0 || len(tr.NStgid) != len(tr.NSpid) ||
		len(tr.NSpgid) != len(tr.NSpid) || len(tr.NSsid) != len(tr.NSpid) {
		return nil, fmt.Errorf("%s/status: NS lists missing or of different lengths: %+v", dir, tr)
	}
	if tr.Tid != tid || tr.Tgid != tgid {
		return nil, fmt.Errorf("%s/status: Pid %d Tgid %d", dir, tr.Tid, tr.Tgid)
	}

	f, err := statFields(tgid, tid)
	if err != nil {
		return nil, err
	}
	if len(f) < 50 || len(f[0]) != 1 {
		return nil, fmt.Errorf("%s/stat: %d fields after comm", dir, len(f))
	}
	tr.State = f[0][0]
	if tr.ExitCode, err = strconv.Atoi(f[49]); err != nil {
		return nil, fmt.Errorf("%s/stat: exit_code %q", dir, f[49])
	}
	comm, err := os.ReadFile(dir + "/comm")
	if err != nil {
		return nil, err
	}
	tr.Comm = strings.TrimSuffix(string(comm), "\n")

	// A zombie has released its namespaces: leave PidNS 0.
	var st syscall.Stat_t
	if err := syscall.Stat(dir+"/ns/pid", &st); err == nil {
		tr.PidNS = st.Ino
	}
	return tr, nil
}

// level returns the pid namespace level of the task below the test's.
func (tr *truth) level() int { return len(tr.NSpid) - 1 }

// parentNS returns the inode of the parent of the pid namespace with inode
// ns, found through any task whose namespace it is (ioctl NS_GET_PARENT).
func parentNS(tgid, tid int) (uint64, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/task/%d/ns/pid", tgid, tid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	pfd, err := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
	if err != nil {
		return 0, fmt.Errorf("NS_GET_PARENT of %d/%d: %w", tgid, tid, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// treeTruth is /proc's view of a whole subtree.
type treeTruth struct {
	root  int // the root process
	tasks []*truth
	byTid map[int]*truth
}

// readTreeTruth reads the truth of every task of the subtree rooted at pid.
func readTreeTruth(t *testing.T, pid int) *treeTruth {
	t.Helper()
	tt := &treeTruth{root: pid, byTid: map[int]*truth{}}
	ids := subtree(pid)
	if len(ids) == 0 {
		t.Fatalf("process %d is gone", pid)
	}
	for _, id := range ids {
		tr, err := taskTruth(id.tgid, id.tid)
		if err != nil {
			t.Fatalf("truth of %d/%d: %v", id.tgid, id.tid, err)
		}
		tt.tasks = append(tt.tasks, tr)
		tt.byTid[tr.Tid] = tr
	}
	return tt
}

// ids returns the tasks' ids.
func (tt *treeTruth) ids() []taskID {
	out := make([]taskID, len(tt.tasks))
	for i, tr := range tt.tasks {
		out[i] = taskID{tr.Tgid, tr.Tid}
	}
	return out
}

// signature summarises the tree's identity (its tasks and their ids), to
// check that it did not change while a test looked at it.
func (tt *treeTruth) signature() string {
	var b strings.Builder
	for _, tr := range tt.tasks {
		fmt.Fprintf(&b, "%d/%d %v %v %v %v %d %c %s|", tr.Tgid, tr.Tid, tr.NSpid, tr.NStgid,
			tr.NSpgid, tr.NSsid, tr.PPid, tr.State, tr.Comm)
	}
	return b.String()
}
