// Package kcmp wraps kcmp(2), which golang.org/x/sys lacks: it tells
// whether two tasks share a kernel object, and orders the objects so that
// the tasks of a tree can be grouped by the object they hold with a sort.
package kcmp

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/sys"
)

// Kind is a kind of object kcmp compares (enum kcmp_type).
type Kind uintptr

const (
	VM    Kind = 1 // KCMP_VM: the address space
	Files Kind = 2 // KCMP_FILES: the descriptor table
	FS    Kind = 3 // KCMP_FS: working directory, root and umask
)

func (k Kind) String() string {
	switch k {
	case VM:
		return "address space"
	case Files:
		return "descriptor table"
	case FS:
		return "fs struct"
	}
	return fmt.Sprintf("kcmp kind %d", uintptr(k))
}

// Compare compares the objects of kind k that tasks pid1 and pid2 hold
// (pids of the caller's namespace): 0 when they hold the same one, else -1
// or 1 in an order that holds for the whole boot (the kernel compares
// obfuscated pointers). The caller needs ptrace read access to both.
func Compare(k Kind, pid1, pid2 int) (int, error) {
	for {
		r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), uintptr(k), 0, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return 0, sys.Wrap("kcmp", e)
		}
		switch r {
		case 0:
			return 0, nil
		case 1:
			return -1, nil
		case 2:
			return 1, nil
		}
		return 0, fmt.Errorf("kcmp(%d, %d, %s): no order (%d)", pid1, pid2, k, r)
	}
}

// Same reports whether tasks pid1 and pid2 share their object of kind k.
func Same(k Kind, pid1, pid2 int) (bool, error) {
	c, err := Compare(k, pid1, pid2)
	return c == 0 && err == nil, err
}
