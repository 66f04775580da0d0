package checkpoint

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/fileid"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// The identity of the regular files an image names by path (image.FileID:
// size, mtime and an ELF file's build-id), which lets restart recognize a
// faithful copy of a file on another machine, and a file rewritten in
// place on this one.
//
// Each file is read through the /proc link of the mapping or descriptor
// (map_files/<range>, fd/<n>), so that it is the very file the process
// holds even if its path now names another. A file is read once per
// checkpoint, whatever the number of processes mapping it: the cache is
// keyed by device, inode, size and mtime. A file whose identity cannot be
// read gets none, and restart then accepts only that very file (its
// device and inode), as images before format version 3: the identity
// widens what a restore accepts, so lacking it is never unsafe.

// buildIDWait bounds the wait for a file's build-id. A file served by a
// FUSE daemon of the frozen tree itself (an AppImage's own mount) would
// never answer; the read then carries on in the background until the
// tree runs again, and the file's device is not read again in this
// checkpoint.
const buildIDWait = time.Second

// errStalled says a read did not answer within buildIDWait.
var errStalled = errors.New("no answer within the wait for a build-id")

// fileIDs reads and caches the identities of one checkpoint.
type fileIDs struct {
	known   map[fileIDKey]*image.FileID // nil: could not be read
	stalled map[uint64]bool             // devices that did not answer
}

type fileIDKey struct {
	dev, ino, size uint64
	sec            int64
	nsec           uint32
}

func newFileIDs() *fileIDs {
	return &fileIDs{known: make(map[fileIDKey]*image.FileID), stalled: make(map[uint64]bool)}
}

// of returns the identity of the regular file that path, a /proc link,
// leads to: base is what its status says (size and mtime), to which its
// build-id is added; nil if its build-id could not be read.
func (c *fileIDs) of(path string, dev, ino uint64, base *image.FileID) *image.FileID {
	key := fileIDKey{dev, ino, base.Size, base.MtimeSec, base.MtimeNsec}
	if id, ok := c.known[key]; ok {
		return id
	}
	var id *image.FileID
	if !c.stalled[dev] {
		switch bid, err := readBuildID(path); {
		case err == errStalled:
			c.stalled[dev] = true
		case err == nil:
			id = base
			id.BuildID = bid
		}
	}
	c.known[key] = id
	return id
}

// mappings records the identity of every file mapping of process pid.
// The status comes from statx with AT_STATX_DONT_SYNC: a FUSE or network
// file's attributes as cached, without asking its server, which may be
// frozen with the tree. Opening map_files needs CAP_SYS_ADMIN or
// CAP_CHECKPOINT_RESTORE; without it, no identity is recorded.
func (c *fileIDs) mappings(pid int, mm *image.MM) {
	const want = unix.STATX_TYPE | unix.STATX_INO | unix.STATX_SIZE | unix.STATX_MTIME
	for i := range mm.VMAs {
		v := &mm.VMAs[i]
		if v.Flags&image.VMAAnon != 0 || v.Special != image.SpecialNone {
			continue
		}
		path := procfs.MapFilesPath(pid, v.Start, v.End)
		var st unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_STATX_DONT_SYNC, want, &st); err != nil ||
			st.Mask&want != want || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		v.ID = c.of(path, unix.Mkdev(st.Dev_major, st.Dev_minor), st.Ino, fileid.Statx(&st))
	}
}

// readBuildID reads the build-id of the file path leads to, waiting at
// most buildIDWait (see there).
func readBuildID(path string) ([]byte, error) {
	type answer struct {
		id  []byte
		err error
	}
	done := make(chan answer, 1)
	go func() {
		id, err := buildIDAt(path)
		done <- answer{id, err}
	}()
	t := time.NewTimer(buildIDWait)
	defer t.Stop()
	select {
	case a := <-done:
		return a.id, a.err
	case <-t.C:
		return nil, errStalled
	}
}

// buildIDAt opens path for reading, without changing its access time
// where the kernel lets us and without waiting for a lease a frozen task
// holds (O_NONBLOCK), and reads its build-id. A file of a pseudo
// filesystem (/proc/kmsg ...) is not read: it has none.
func buildIDAt(path string) ([]byte, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return nil, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if !fileid.Readable(&fs) {
		return nil, nil
	}
	const flags = os.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	f, err := os.OpenFile(path, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		f, err = os.OpenFile(path, flags, 0) // O_NOATIME is the owner's or CAP_FOWNER's
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return fileid.BuildID(f)
}
