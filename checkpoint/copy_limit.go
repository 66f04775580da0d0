package checkpoint

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// The memory a snapshot duplicates is bounded by Options.CopyLimit. Two
// kinds count against it:
//
//   - pages read while the tree is frozen (those of shared mappings, of
//     processes too small for a copy, of mappings a copy does not share),
//     held in the daemon's memory until the layout is closed;
//   - pages the tree writes, after it runs on, into memory a copy still
//     shares: the kernel duplicates each once, and the copy keeps the old
//     one (checked every copyPoll, from /proc/<copy>/smaps_rollup).
//
// Past the limit nothing is ever lost silently: pages of shared mappings
// beyond it refuse the checkpoint; a process too small for a copy is held
// frozen instead of being read at once; a layout whose copies have grown
// past it fails, its readers get ENOMEM and the copies end, the tree
// running on untouched. The copies are also the OOM killer's first choice
// (setOOMScore): should the duplicated pages run a cgroup out of memory
// before a poll sees them, the snapshot dies, not the tree.

// ErrCopyLimit: the memory a snapshot would duplicate exceeds its limit.
var ErrCopyLimit = fmt.Errorf("checkpoint: copy-on-write limit exceeded: %w", unix.ENOMEM)

// copyPoll is how often the pages duplicated for copies are counted.
const copyPoll = 100 * time.Millisecond

// DefaultCopyLimit is the limit when Options.CopyLimit is 0: a quarter of
// the machine's memory, and at least 256 MiB.
func DefaultCopyLimit() int64 {
	var si unix.Sysinfo_t
	limit := int64(256 << 20)
	if unix.Sysinfo(&si) == nil {
		limit = max(limit, int64(si.Totalram)*int64(si.Unit)/4)
	}
	return limit
}

func (o *Options) copyLimit() int64 {
	if o.CopyLimit > 0 {
		return o.CopyLimit
	}
	return DefaultCopyLimit()
}

// budget counts what one layout duplicates.
type budget struct {
	limit int64

	mu     sync.Mutex
	read   int64 // bytes read while frozen
	copied int64 // bytes duplicated by copies, at the last poll
}

// take counts n bytes read while frozen; it refuses them past the limit.
func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.read+b.copied+n > b.limit {
		return false
	}
	b.read += n
	return true
}

// total is everything duplicated so far.
func (b *budget) total() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read + b.copied
}

// CopiedNow is how much memory the layout duplicates now: pages read while
// the tree was frozen, and pages its copies hold that the tree has written
// since (as of the last poll).
func (l *Layout) CopiedNow() int64 { return l.budget.total() }

// pollCopies counts, every copyPoll until stop is closed, the pages the
// layout's copies no longer share with their processes, and fails the
// layout past its limit.
func (l *Layout) pollCopies(stop <-chan struct{}) {
	tick := time.NewTicker(copyPoll)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var sum int64
		for _, mc := range l.copies {
			n, err := procfs.PrivateBytes(mc.c.Tid)
			if err != nil {
				continue // gone: the watch fails the layout
			}
			sum += n
		}
		b := &l.budget
		b.mu.Lock()
		b.copied = sum
		over := b.read+b.copied > b.limit
		total := b.read + b.copied
		b.mu.Unlock()
		if over {
			l.fail(fmt.Errorf("the tree wrote into memory its snapshot's copies still shared: %d MiB duplicated, over the limit of %d MiB: %w",
				total>>20, b.limit>>20, ErrCopyLimit))
			return
		}
	}
}
