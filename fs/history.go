package fs

import (
	"sort"
	"time"
)

// The outcomes of ended restores are kept for their writers to read, but
// not without bound: restore/ keeps at most keepEnded of them, the oldest
// (by the time their restore ended) forgotten first, and none older than
// keepEndedFor. A restore still restoring is never forgotten, nor counted.
// The bound is applied whenever restore/ is listed, looked up or written
// to, so that nothing past it is ever seen.
const (
	keepEnded    = 256
	keepEndedFor = 24 * time.Hour
)

// forgetLocked forgets the ended restores beyond the bound, as of now.
// Called with d.mu held.
func (d *restoreDir) forgetLocked(now time.Time) {
	type ended struct {
		name string
		at   time.Time
	}
	var all []ended
	for name, f := range d.files {
		if done, at := f.lastEnded(); done {
			all = append(all, ended{name, at})
		}
	}
	if len(all) == 0 {
		return
	}
	// Newest first: what is kept is a prefix.
	sort.Slice(all, func(i, j int) bool {
		if !all[i].at.Equal(all[j].at) {
			return all[i].at.After(all[j].at)
		}
		return all[i].name < all[j].name
	})
	for i, e := range all {
		if i < keepEnded && now.Sub(e.at) <= keepEndedFor {
			continue
		}
		d.cfg.Logger.Printf("%s/%s: forgotten (%s/ keeps the %d latest ended restores, for %v)", d.name, e.name, d.name, keepEnded, keepEndedFor)
		delete(d.files, e.name)
		d.RmChild(e.name) // go-fuse's own tree, which Lookup and Create filled
		d.changed = now
	}
}
