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
//     one (checked every copyPoll: see pollCopies).
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

// CopiedNow is how much memory the layout duplicates now, at most: pages
// read while the tree was frozen, and pages its copies hold that the tree
// has written since (as of the last poll; see pollCopies).
func (l *Layout) CopiedNow() int64 { return l.budget.total() }

// pollCopies counts, every copyPoll until stop is closed, the pages the
// layout's copies no longer share with their processes, and fails the
// layout past its limit.
//
// Counting them exactly (smaps_rollup) walks every page table entry of a
// copy, which costs too much to do often for a large one. But a process
// writing a page its copy shares takes a page fault for it, so the faults
// it took since the fork (its minflt, a counter the kernel keeps anyway)
// bound what it duplicated from above. Only when that bound goes over the
// limit are the copies counted exactly, at most once per ten times what
// the last count took.
func (l *Layout) pollCopies(stop <-chan struct{}) {
	tick := time.NewTicker(copyPoll)
	defer tick.Stop()
	bounds := make(map[*memCopy]int64) // the latest bound of each, kept once its process is gone
	var exactAfter time.Time
	page := int64(unix.Getpagesize())
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var bound int64
		for _, mc := range l.copies {
			if st, err := procfs.ReadStat(mc.tgid); err == nil && st.StartTime == mc.start {
				bounds[mc] = int64(st.MinFlt-mc.minflt) * page
			}
			bound += bounds[mc]
		}
		b := &l.budget
		b.mu.Lock()
		b.copied = bound
		over := b.read+bound > b.limit
		b.mu.Unlock()
		if !over || time.Now().Before(exactAfter) {
			continue
		}
		start := time.Now()
		var exact int64
		for _, mc := range l.copies {
			if st, err := procfs.ReadStat(mc.tgid); err != nil || st.StartTime != mc.start {
				// Its process is gone, and with it the pages the copy
				// shared: what the copy holds duplicates nothing now.
				exact += bounds[mc]
				continue
			}
			if n, err := procfs.PrivateBytes(mc.c.Tid); err == nil {
				exact += n
			}
		}
		exactAfter = time.Now().Add(10 * time.Since(start))
		b.mu.Lock()
		b.copied = exact
		total := b.read + exact
		over = total > b.limit
		b.mu.Unlock()
		if over {
			l.fail(fmt.Errorf("the tree wrote into memory its snapshot's copies still shared: %d MiB duplicated, over the limit of %d MiB: %w",
				total>>20, b.limit>>20, ErrCopyLimit))
			return
		}
	}
}
