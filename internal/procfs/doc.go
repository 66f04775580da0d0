// Package procfs reads the /proc files that checkpoint needs: one file per
// /proc file, as prometheus/procfs does. Every number it returns is as seen
// from the pid namespace of the /proc mount it reads, which for ckptfs is
// the daemon's own.
package procfs

import "strconv"

// Root is the procfs mount read by this package. Tests may point it elsewhere.
var Root = "/proc"

func pidDir(pid int) string { return Root + "/" + strconv.Itoa(pid) }

func taskDir(tgid, tid int) string {
	return pidDir(tgid) + "/task/" + strconv.Itoa(tid)
}
