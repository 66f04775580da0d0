package checkpoint

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// readFileData copies a file that no path names any more — deleted, or a
// memfd — which descriptor fd of process pid holds open (target is what
// /proc shows for it): its contents, mode, owner and, for a memfd, name and
// seals. Nothing else could bring it back.
func readFileData(pid, fd int, target string) (*image.FileData, error) {
	f, err := os.Open(procfs.FDPath(pid, fd))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	if st.Size > image.MaxFileData {
		return nil, fmt.Errorf("%s holds %d bytes, more than the %d an image carries: %w",
			target, st.Size, image.MaxFileData, ErrUnsupported)
	}
	name := strings.TrimSuffix(target, " (deleted)")
	d := &image.FileData{Dev: st.Dev, Ino: st.Ino, Mode: st.Mode & 0o7777, Uid: st.Uid, Gid: st.Gid,
		Name: name, Size: uint64(st.Size)}
	if memfd, ok := strings.CutPrefix(name, "/memfd:"); ok {
		seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", target, os.NewSyscallError("fcntl(F_GET_SEALS)", err))
		}
		d.Memfd, d.Name, d.Seals = true, memfd, uint32(seals)
	}
	d.Data = make([]byte, st.Size)
	n, err := io.ReadFull(f, d.Data)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("%s: %w", target, err)
	}
	d.Data = d.Data[:n]
	return d, nil
}
