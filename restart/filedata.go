package restart

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// fileDataSet holds the files no path names — deleted files and memfds —
// that a restore made again from FILEDATA records, until every task has
// opened them.
type fileDataSet struct {
	records map[[2]uint64]*image.FileData
	made    map[[2]uint64]*os.File
}

// add keeps a FILEDATA record until a descriptor needs its file.
func (s *fileDataSet) add(d *image.FileData) error {
	if s.records == nil {
		s.records, s.made = make(map[[2]uint64]*image.FileData), make(map[[2]uint64]*os.File)
	}
	key := [2]uint64{d.Dev, d.Ino}
	if _, dup := s.records[key]; dup {
		return fmt.Errorf("file data of inode %d given twice", d.Ino)
	}
	s.records[key] = d
	return nil
}

// path names the file of descriptor f so that a task can open it: the
// restorer's own descriptor of it, seen through /proc.
func (s *fileDataSet) path(f image.FD, g *gate) (string, error) {
	key := [2]uint64{f.Dev, f.Ino}
	file, ok := s.made[key]
	if !ok {
		d, ok := s.records[key]
		if !ok {
			return "", fmt.Errorf("deleted file %s has no FILEDATA record before it", f.Path)
		}
		var err error
		// Made with the restoring user's rights: they may only create
		// files where they could, owned as they could own them.
		g.asCaller(func() { file, err = makeFile(d) })
		if err != nil {
			return "", fmt.Errorf("%s: %w", f.Path, err)
		}
		s.made[key] = file
	}
	return procfs.FDPath(os.Getpid(), int(file.Fd())), nil
}

// makeFile makes an unlinked file again: a memfd of the same name and
// seals, or an O_TMPFILE file in the directory the deleted one was in, on
// the same filesystem as far as that directory still is. Contents, size,
// mode and owner are the image's.
func makeFile(d *image.FileData) (*os.File, error) {
	var fd int
	var err error
	if d.Memfd {
		flags := unix.MFD_CLOEXEC
		if d.Seals != unix.F_SEAL_SEAL {
			flags |= unix.MFD_ALLOW_SEALING // else it is born sealed against seals
		}
		fd, err = unix.MemfdCreate(d.Name, flags)
		err = os.NewSyscallError("memfd_create", err)
	} else {
		fd, err = unix.Open(filepath.Dir(d.Name), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		err = os.NewSyscallError("open(O_TMPFILE)", err)
	}
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.Name)
	fail := func(what string, err error) (*os.File, error) {
		f.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if _, err := f.WriteAt(d.Data, 0); err != nil {
		return fail("write contents", err)
	}
	if err := f.Truncate(int64(d.Size)); err != nil {
		return fail("set size", err)
	}
	if err := unix.Fchmod(fd, d.Mode); err != nil { // with the set-id and sticky bits
		return fail("chmod", err)
	}
	if err := f.Chown(int(d.Uid), int(d.Gid)); err != nil {
		return fail("chown", err)
	}
	if d.Memfd && d.Seals&^unix.F_SEAL_SEAL != 0 {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, int(d.Seals)); err != nil {
			return fail("seal", err)
		}
	}
	return f, nil
}

// close drops the restorer's descriptors: the tasks hold their own.
func (s *fileDataSet) close() {
	for _, f := range s.made {
		f.Close()
	}
}
