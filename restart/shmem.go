package restart

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// shmemSet holds the shared anonymous memory objects (MAP_SHARED |
// MAP_ANONYMOUS) of a restore, by the device and inode the image saw, so
// that every process that shared one maps the same object again. The
// restorer makes each one the way the kernel does, with a shared
// anonymous mapping of its own, whose file it keeps (through map_files)
// before unmapping it: the tasks' mappings of that file are then shared
// anonymous memory like the originals, "/dev/zero (deleted)" in maps.
type shmemSet struct {
	byKey map[[2]uint64]*os.File
}

// isSharedAnon reports whether a mapping is shared anonymous memory.
func isSharedAnon(v *image.VMA) bool {
	return v.Flags&image.VMAAnon != 0 && v.Flags&image.VMAShared != 0 && v.Ino != 0 && v.Special == image.SpecialNone
}

// path returns where a task opens the object of mapping v, made or grown
// to cover it.
func (s *shmemSet) path(v *image.VMA) (string, error) {
	if s.byKey == nil {
		s.byKey = make(map[[2]uint64]*os.File)
	}
	key := [2]uint64{v.Dev, v.Ino}
	f, ok := s.byKey[key]
	if !ok {
		var err error
		if f, err = newShmem(); err != nil {
			return "", fmt.Errorf("shared memory %#x-%#x: %w", v.Start, v.End, err)
		}
		s.byKey[key] = f
	}
	size := int64(v.Pgoff + v.End - v.Start)
	if fi, err := f.Stat(); err != nil || fi.Size() < size {
		if err := f.Truncate(size); err != nil {
			return "", fmt.Errorf("shared memory %#x-%#x: size %d: %w", v.Start, v.End, size, err)
		}
	}
	return procfs.FDPath(os.Getpid(), int(f.Fd())), nil
}

// newShmem makes a shared anonymous object and returns its file.
func newShmem() (*os.File, error) {
	page := os.Getpagesize()
	b, err := unix.Mmap(-1, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	defer unix.Munmap(b)
	addr := uintptr(unsafe.Pointer(&b[0]))
	f, err := os.OpenFile(procfs.MapFilesPath(os.Getpid(), uint64(addr), uint64(addr+uintptr(page))), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	// Nothing of the restorer's page may show: the image's pages fill it.
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// close drops the restorer's hold: the tasks map their own.
func (s *shmemSet) close() {
	for _, f := range s.byKey {
		f.Close()
	}
}
