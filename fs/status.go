package fs

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// DirStatus is what <pid>/status reads, as indented JSON: the state of the
// directory's latest snapshot. Reading it never freezes anything, starts a
// capture or waits for one: it tells what the directory's record holds
// (record.go). Its fields are a contract with scripts and people; add,
// never rename.
//
// Who sees what: the file is mode 0444, owned like the directory, and
// anyone may read the state. The rest (the error, which names tasks,
// descriptors and files, and the snapshot's figures) is shown only to a
// reader who could read the checkpoint itself: one who may ptrace the
// directory's process and, when a snapshot is shown, every task of it (the
// rules of docs/DESIGN.md §1). Anyone else reads {"pid", "state",
// "withheld": true}.
type DirStatus struct {
	Pid int `json:"pid"`
	// State is one of:
	//   "none"     no snapshot is held: none was ever taken, or the last
	//              one expired and its tree runs (Snapshot then describes
	//              that last one, if any);
	//   "freezing" a capture is under way: the tree is being frozen and
	//              laid out;
	//   "frozen"   a snapshot is held and its tree is frozen (its image
	//              not read through yet, a file of it open, or its grace
	//              period not over);
	//   "released" the snapshot's tree runs again (its image was read
	//              through) while files open on it still read it;
	//   "failed"   the last capture failed (refused, or given up), or the
	//              snapshot did (a process of its tree vanished): see
	//              Error. The next use tries again.
	State string `json:"state"`
	// Since is when the state began: for "failed", when the error
	// happened.
	Since time.Time `json:"since,omitzero"`
	// Withheld: the reader may not read the tree's checkpoint, so it is
	// shown the state only.
	Withheld bool `json:"withheld,omitempty"`
	// Error, in state "failed", is the error exactly as the daemon logs
	// it (it names the task, the descriptor or object, and why), and
	// Errno the name of the errno the reader got for it ("EOPNOTSUPP",
	// "EDEADLK", "EINTR" for a capture every reader of which was
	// interrupted, "EIO" for a snapshot whose tree lost a process).
	Error string `json:"error,omitempty"`
	Errno string `json:"errno,omitempty"`
	// Snapshot describes the latest snapshot taken, current or expired;
	// absent before any, and after a capture that failed.
	Snapshot *SnapshotFigures `json:"snapshot,omitempty"`
}

// SnapshotFigures describe one snapshot. Durations are in milliseconds,
// to the microsecond.
type SnapshotFigures struct {
	// Time is the snapshot's time: the mtime of its files and of the
	// directory.
	Time time.Time `json:"time"`
	Mode string    `json:"mode"` // "container" or "subtree"
	// Tasks counts every task of the tree (threads, zombies included),
	// Processes the thread groups, Threads the tasks that are not the
	// leader of their group: tasks = processes + threads.
	Tasks     int `json:"tasks"`
	Processes int `json:"processes"`
	Threads   int `json:"threads"`
	// Bytes is the image's size (what stat says of image), PageBytes the
	// page contents it carries, Pages that in pages.
	Bytes     int64 `json:"bytes"`
	Pages     int64 `json:"pages"`
	PageBytes int64 `json:"page_bytes"`
	// CaptureMS is how long the capture took, from the start of the
	// freeze until the image was laid out.
	CaptureMS float64 `json:"capture_ms"`
	// FrozenMS is how long the tree has been frozen (until now, while it
	// is), or was (until Released), from its first task's stop.
	FrozenMS float64 `json:"frozen_ms"`
	// Released is when the tree was let go; absent while it is frozen.
	Released time.Time `json:"released,omitzero"`
	// BytesRead is what the snapshot's files served so far, every reader
	// and file together (a byte read twice counts twice), and ReadMS the
	// time from the first of those reads to the latest.
	BytesRead int64   `json:"bytes_read"`
	ReadMS    float64 `json:"read_ms"`
	// ReadThrough: the image was read through, in order, at least once
	// (so its checksum is known, and its tree could run on at once).
	ReadThrough bool `json:"read_through"`
	// Copies counts the processes whose pages are read from a
	// copy-on-write copy of their memory, Held those kept frozen until
	// their image is read instead; CopiedBytes is what was read while the
	// tree was frozen, DuplicatedBytes all the memory the snapshot
	// duplicates (now, or when it ended), at most: CopiedBytes and the
	// pages the tree has written since that its copies still shared
	// (--cow-limit bounds it).
	Copies          int   `json:"copies"`
	Held            int   `json:"held"`
	CopiedBytes     int64 `json:"copied_bytes"`
	DuplicatedBytes int64 `json:"duplicated_bytes"`
}

// statusFile is <pid>/status.
type statusFile struct {
	gofs.Inode
	dir *procDir
}

// mayInspect reports whether caller may see the details of a directory's
// status: whether it could ptrace process pid and every task of res (nil:
// no snapshot to check). A variable, for tests.
var mayInspect = func(caller checkpoint.Caller, pid int, res *checkpoint.Result) bool {
	access, err := caller.Access()
	if err != nil {
		return false
	}
	// Its own process is the caller's to read, though not to freeze.
	if err := access.Allow(pid, pid); err != nil && !errors.Is(err, checkpoint.ErrSelf) {
		return false
	}
	return res == nil || check(access, res) == nil
}

// status renders the status for the caller of ctx, as of now, and tells
// when it last changed. A process gone is ENOENT.
func (f *statusFile) status(ctx context.Context) ([]byte, time.Time, *fuse.Attr, syscall.Errno) {
	key, st, ok := lookupProcess(f.dir.key.pid)
	if !ok || key != f.dir.key {
		return nil, time.Time{}, nil, syscall.ENOENT
	}
	var attr fuse.Attr
	attr.Mode = fuse.S_IFREG | 0o444
	attr.Uid, attr.Gid = uint32(st.Uid[1]), uint32(st.Gid[1])
	var v recordView
	if rec := f.dir.root.recordOf(key); rec != nil {
		v = rec.view()
	} else {
		v.state = stateNone
	}
	caller, known := callerOf(ctx)
	var res *checkpoint.Result
	if v.snap != nil {
		res = v.snap.res
	}
	detail := known && mayInspect(caller, key.pid, res)
	data := renderStatus(key.pid, v, time.Now(), detail)
	changed := v.since
	if changed.IsZero() {
		changed = f.dir.mtime()
	}
	return data, changed, &attr, 0
}

// renderStatus is the JSON of a record's view for a reader, who sees the
// details if detail.
func renderStatus(pid int, v recordView, now time.Time, detail bool) []byte {
	out := DirStatus{Pid: pid, State: v.state}
	if !detail {
		out.Withheld = true
	} else {
		out.Since = v.since
		if v.state == stateFailed && v.err != nil {
			out.Error = v.err.Error()
			out.Errno = errnoName(v.errno)
		}
		if v.snap != nil {
			out.Snapshot = v.snap.figures(now)
		}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		// Nothing in a DirStatus can fail to marshal.
		panic("fs: status: " + err.Error())
	}
	return append(data, '\n')
}

// FiguresOf are the figures of a checkpoint taken at taken, as far as its
// Result tells them: the capture's. What becomes of the snapshot after
// (how long it stays frozen, how it is read) is the holder's to add.
// ckptfs checkpoint --stats prints them too.
func FiguresOf(res *checkpoint.Result, taken time.Time) *SnapshotFigures {
	return &SnapshotFigures{
		Time: taken, Mode: res.Mode.String(),
		Tasks: res.Tasks, Processes: res.Processes, Threads: res.Threads,
		Bytes: res.Size, Pages: res.Pages, PageBytes: res.PageBytes,
		CaptureMS: Millis(res.Capture),
		FrozenMS:  Millis(res.Frozen),
		Copies:    res.Copies, Held: res.Held, CopiedBytes: res.CopiedBytes,
		DuplicatedBytes: res.CopiedBytes,
	}
}

// figures reports a snapshot as of now.
func (st *snapStats) figures(now time.Time) *SnapshotFigures {
	st.mu.Lock()
	defer st.mu.Unlock()
	fig := FiguresOf(st.res, st.taken)
	fig.Released = st.released
	fig.BytesRead = st.bytesRead
	fig.ReadThrough = st.readThrough
	if st.duplicated != nil {
		fig.DuplicatedBytes = st.duplicated()
	} else if st.duplicatedAtEnd > 0 {
		fig.DuplicatedBytes = st.duplicatedAtEnd
	}
	until := now
	if !st.released.IsZero() {
		until = st.released
	}
	fig.FrozenMS = Millis(until.Sub(st.frozenSince))
	if !st.firstRead.IsZero() {
		fig.ReadMS = Millis(st.lastRead.Sub(st.firstRead))
	}
	return fig
}

// Millis is d in milliseconds, to the microsecond: the unit of the
// figures' durations.
func Millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// errnoName names an errno as <errno.h> does ("EOPNOTSUPP"). Of the two
// names of 95, the one the errors of ckptfs wrap (checkpoint's
// ErrUnsupported, ErrExternal) and glibc's strerrorname_np give.
func errnoName(e syscall.Errno) string {
	if e == syscall.EOPNOTSUPP {
		return "EOPNOTSUPP"
	}
	if name := unix.ErrnoName(e); name != "" {
		return name
	}
	return e.Error()
}

var _ = (gofs.NodeGetattrer)((*statusFile)(nil))

// Getattr reports the size of the status the caller would read now, and
// when it last changed (its state's time). On an open file it describes
// what that file reads.
func (f *statusFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*statusHandle); ok {
		out.Attr = h.attr
		return 0
	}
	data, changed, attr, errno := f.status(ctx)
	if errno != 0 {
		return errno
	}
	out.Attr = *attr
	fillStatusAttr(&out.Attr, len(data), changed)
	return 0
}

func fillStatusAttr(out *fuse.Attr, size int, changed time.Time) {
	out.Size = uint64(size)
	out.Blocks = (out.Size + 511) / 512
	out.Nlink = 1
	out.SetTimes(&changed, &changed, &changed)
}

var _ = (gofs.NodeOpener)((*statusFile)(nil))

// Open renders the status once: one open reads one consistent status, of
// the size its fstat reports.
func (f *statusFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EACCES // mode 0444
	}
	data, changed, attr, errno := f.status(ctx)
	if errno != 0 {
		return nil, 0, errno
	}
	h := &statusHandle{data: data, attr: *attr}
	fillStatusAttr(&h.attr, len(data), changed)
	return h, fuse.FOPEN_DIRECT_IO, 0
}

// statusHandle is an open status file (<pid>/status, or restore/<name>
// opened for reading): the status as it was at open.
type statusHandle struct {
	data []byte
	attr fuse.Attr
	run  *restoreRun // restore/<name>: the restore it tells
}

var _ = (gofs.FileReader)((*statusHandle)(nil))

func (h *statusHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultData(sliceAt(h.data, dest, off)), 0
}

// sliceAt is what a read of len(dest) bytes at off returns of data.
func sliceAt(data, dest []byte, off int64) []byte {
	if off < 0 || off >= int64(len(data)) {
		return nil
	}
	return data[off:min(int64(len(data)), off+int64(len(dest)))]
}
