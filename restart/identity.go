package restart

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/fileid"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// Which file found by path is the file the image saw.
//
// The image records, with each file it names by path, its device and
// inode and, from format version 3, its identity (image.FileID: size,
// mtime and an ELF file's build-id). The gate takes the file at the path
// for the checkpointed one when:
//
//   - it is that very file (device and inode) and it is unchanged (size,
//     mtime and build-id): code and data mapped from it are what the
//     process had, and a file rewritten in place since is caught;
//   - or it is another file, a copy on this machine or another (a package
//     of the same version, cp -p, rsync -a, an overlay's copy), and its
//     size, mtime and build-id are the recorded ones: rsync's quick
//     check, with the build-id that the linker derived from an ELF file's
//     contents;
//   - or it is that very file and the tree uses it live (a descriptor,
//     a shared writable mapping): the tree may have written it after the
//     checkpoint, or it reads what others append (tail -f on a log), so a
//     change is what it would have seen anyway. Another such file passes
//     only as an unchanged copy: the tree must not write into a file that
//     differs from the one it had without being told, and a log that went
//     on growing elsewhere is such a file. (Code and data mapped
//     privately are another matter: the pages the image does not carry
//     come from the file, and must be the ones the process had.)
//
// An image without the identity of a file (version 2, or a file the
// checkpoint could not read) leaves only the first test without its
// second half: the very file, by device and inode.

// expect is what an image says of a file it names by path.
type expect struct {
	dev, ino uint64
	id       *image.FileID // nil: none recorded
	live     bool          // the tree uses it live: see "Which file found by path is the file the image saw"
}

// heldFile is a file the gate found, and its build-id once read.
type heldFile struct {
	f       *os.File // O_PATH
	buildID []byte
	readAt  *image.FileID // the size and mtime the build-id was read at; nil: not read
	readErr error
}

// check says how the file h found at path is not the one want describes,
// or nil if it is.
func (g *gate) check(path string, h *heldFile, want *expect) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(h.f.Fd()), &st); err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	same := st.Dev == want.dev && st.Ino == want.ino
	other := fmt.Sprintf("device %#x inode %d, was %#x inode %d", st.Dev, st.Ino, want.dev, want.ino)
	switch {
	case want.id == nil && same:
		return nil
	case want.id == nil:
		why := ""
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			// Say why a faithful copy is not enough here.
			why = "; the image records no size and mtime of it to recognize a copy by"
		}
		return fmt.Errorf("%s is not the checkpointed file (%s)%s", path, other, why)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s is not the checkpointed file: %s, was a regular file (%s)", path, fileType(st.Mode), other)
	case same && want.live:
		return nil
	}
	var diffs []string
	found := fileid.Stat(&st)
	if found.Size != want.id.Size {
		diffs = append(diffs, fmt.Sprintf("size %d, was %d", found.Size, want.id.Size))
	}
	if found.MtimeSec != want.id.MtimeSec || found.MtimeNsec != want.id.MtimeNsec {
		diffs = append(diffs, fmt.Sprintf("mtime %s, was %s", timeText(found), timeText(want.id)))
	}
	if len(want.id.BuildID) > 0 {
		bid, err := g.buildID(path, h, found)
		switch {
		case err != nil:
			diffs = append(diffs, fmt.Sprintf("build-id unreadable (%v), was %x", err, want.id.BuildID))
		case bid == nil:
			diffs = append(diffs, fmt.Sprintf("no build-id, was %x", want.id.BuildID))
		case !bytes.Equal(bid, want.id.BuildID):
			diffs = append(diffs, fmt.Sprintf("build-id %x, was %x", bid, want.id.BuildID))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	msg := fmt.Sprintf("%s is not the checkpointed file: %s", path, strings.Join(diffs, "; "))
	switch {
	case same:
		msg += " (the same inode, changed since the checkpoint)"
	case want.live:
		msg += fmt.Sprintf(" (%s; the tree uses this file through a descriptor or a shared mapping, and only that very file or an unchanged copy of it will do)", other)
	default:
		msg += " (" + other + ")"
	}
	return errors.New(msg)
}

// buildID reads the build-id of the file h holds, once for each size and
// mtime it is seen with, with the caller's rights: an unprivileged
// restorer learns nothing of a file it may not read.
func (g *gate) buildID(path string, h *heldFile, st *image.FileID) ([]byte, error) {
	if h.readAt != nil && h.readAt.Size == st.Size && h.readAt.MtimeSec == st.MtimeSec && h.readAt.MtimeNsec == st.MtimeNsec {
		return h.buildID, h.readErr
	}
	h.readAt = st
	h.buildID, h.readErr = nil, nil
	g.asCaller(func() {
		var fs unix.Statfs_t
		if err := unix.Fstatfs(int(h.f.Fd()), &fs); err != nil {
			h.readErr = os.NewSyscallError("fstatfs", err)
			return
		}
		if !fileid.Readable(&fs) {
			return // a pseudo filesystem's file: none
		}
		// Through our own descriptor, which any thread of ours may open,
		// as the caller: the kernel checks the caller's read permission.
		f, err := os.OpenFile(procfs.FDPath(os.Getpid(), int(h.f.Fd())), os.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
		if err != nil {
			h.readErr = err
			return
		}
		defer f.Close()
		h.buildID, h.readErr = fileid.BuildID(f)
	})
	if h.readErr != nil {
		h.readErr = fmt.Errorf("%s: %w", path, h.readErr)
	}
	return h.buildID, h.readErr
}

// timeText is an mtime as inspect shows it.
func timeText(id *image.FileID) string { return id.Mtime().UTC().Format(time.RFC3339Nano) }

// fileType names the type of a file that is not a regular one.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a named pipe"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("a file of type %#o", mode&unix.S_IFMT)
}
