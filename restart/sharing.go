package restart

import "github.com/ckptfs/ckptfs/image"

// sharedObjects stands for both objects a task may share: its descriptor
// table and its fs struct (working directory, root, umask).
const sharedObjects = image.TaskSharesFiles | image.TaskSharesFS

// putsBack says which of a task's descriptor table (image.TaskSharesFiles)
// and fs struct (image.TaskSharesFS) its own records put back. A thread's
// are its leader's, which the leader's records put back. Processes sharing
// one (see plan_sharing.go) all record it, and the last of them in TREE
// order puts it back, once every sharer's memory is in place: a working
// directory or root changed earlier would misdirect the paths the later
// ones map their files by, and restoring it twice would undo the first.
func (rs *restorer) putsBack(tag image.Tag) image.TaskFlags {
	id, ok := rs.plan.ByTag[tag]
	if !ok || rs.plan.Procs[id].Thread {
		return 0
	}
	return sharedObjects &^ rs.plan.RestoredLater[tag]
}
