package procfs

import (
	"os"

	"golang.org/x/sys/unix"
)

// Cwd reads the working directory of process pid (/proc/<pid>/cwd), as
// the reader's root sees it; a removed one ends in " (deleted)".
func Cwd(pid int) (string, error) { return os.Readlink(pidDir(pid) + "/cwd") }

// RootDir reads the root directory of process pid (/proc/<pid>/root).
func RootDir(pid int) (string, error) { return os.Readlink(pidDir(pid) + "/root") }

// Owner is the owner of /proc/<pid>: the process's effective uid, or root
// for a process that is not dumpable (how the kernel hides such a process
// from its own user).
func Owner(pid int) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(pidDir(pid), &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: pidDir(pid), Err: err}
	}
	return st.Uid, nil
}
