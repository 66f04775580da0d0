// Package fault lets the fault-injection tests kill ckptfs at a named
// point of its work, to prove that a daemon dying at that instant leaves
// every process it serves as it was (a checkpointed tree running on,
// untouched; a half-built restore gone).
//
// The environment variable CKPTFS_FAULT=POINT[:N] makes the N-th arrival
// (the first if N is absent) at Point(POINT) kill the process with
// SIGKILL, after a line on standard error that names the point, so that a
// test can tell that the point was reached. Without the variable, Point
// costs one atomic load.
package fault

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Env is the environment variable that arms a point.
const Env = "CKPTFS_FAULT"

var (
	armed  atomic.Bool // a point is armed (set once, at the first call)
	once   sync.Once
	point  string
	remain atomic.Int64 // arrivals at point left before the kill
)

func load() {
	v := os.Getenv(Env)
	if v == "" {
		return
	}
	name, count, _ := strings.Cut(v, ":")
	n := int64(1)
	if count != "" {
		if k, err := strconv.ParseInt(count, 10, 64); err == nil && k > 0 {
			n = k
		}
	}
	point = name
	remain.Store(n)
	armed.Store(true)
}

// Point marks a place where the daemon may be killed for a test.
func Point(name string) {
	once.Do(load)
	if !armed.Load() || name != point {
		return
	}
	if remain.Add(-1) != 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "ckptfs: fault: killed at %s\n", name)
	unix.Kill(os.Getpid(), unix.SIGKILL)
	select {} // SIGKILL cannot be held off; wait for it
}
