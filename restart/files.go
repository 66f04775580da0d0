package restart

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
)

// reopenFlags are the open flags that only matter when a file is created
// or first opened; reopening must not repeat them.
const reopenFlags = unix.O_CREAT | unix.O_EXCL | unix.O_TRUNC | unix.O_NOCTTY

// setFiles opens every recorded descriptor again in the task, at its number,
// with its flags and offset. A regular file must still be the one the
// image saw (device and inode): writing to another would lose data.
func (p *proc) setFiles(fds []image.FD, rsp uint64) error {
	for _, f := range fds {
		if err := p.setFile(f, rsp); err != nil {
			return fmt.Errorf("fd %d (%s): %w", f.Num, f.Path, err)
		}
	}
	return nil
}

func (p *proc) setFile(f image.FD, rsp uint64) error {
	if f.Kind == image.FileRegular {
		var st unix.Stat_t
		if err := unix.Stat(f.Path, &st); err != nil {
			return err
		}
		if st.Dev != f.Dev || st.Ino != f.Ino {
			return fmt.Errorf("the file was replaced since the checkpoint (inode %d, was %d)", st.Ino, f.Ino)
		}
	}
	var fd uint64
	err := p.withStackArg(rsp, append([]byte(f.Path), 0), func(addr uint64) (err error) {
		atFDCWD := int64(unix.AT_FDCWD)
		fd, err = p.syscall(unix.SYS_OPENAT, uint64(atFDCWD), addr, uint64(f.Flags&^reopenFlags), 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	cloexec := uint64(0)
	if f.Flags&unix.O_CLOEXEC != 0 {
		cloexec = unix.O_CLOEXEC
	}
	if fd != uint64(f.Num) {
		if _, err := p.syscall(unix.SYS_DUP3, fd, uint64(f.Num), cloexec); err != nil {
			return fmt.Errorf("dup3 to its number: %w", err)
		}
		p.syscall(unix.SYS_CLOSE, fd)
	}
	if f.Kind == image.FileRegular && f.Pos != 0 {
		if _, err := p.syscall(unix.SYS_LSEEK, uint64(f.Num), f.Pos, 0 /* SEEK_SET */); err != nil {
			return fmt.Errorf("seek to %d: %w", f.Pos, err)
		}
	}
	return nil
}
