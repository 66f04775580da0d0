package restart

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// Identity is whose rights an unprivileged restore opens files with: the
// caller's filesystem ids, groups and effective capabilities.
type Identity struct {
	Uid, Gid uint32
	Groups   []uint32
	CapEff   uint64
}

// gate finds the files an image names by path — descriptors, mapped files,
// the executable, the working directory and root — on behalf of its tasks.
// The tasks run as the restorer (root) until their credentials go back
// last, so they must not resolve those paths themselves: the gate looks
// each one up (O_PATH) with the rights of whoever asked for the restore,
// checks that they may open it as the task will, and that it is still the
// file the image saw; the task then opens the file the gate holds, through
// /proc/<restorer>/fd/N, whatever happens to the path meanwhile.
type gate struct {
	as   *Identity // nil: a privileged restore, the kernel's rules for root
	held map[gateKey]*heldFile

	// asCaller runs work on a thread of its own that carries the
	// identity's filesystem credentials (nil when as is nil).
	work chan func()
}

type gateKey struct {
	path   string
	access uint32
}

// newGate starts a gate; with an identity, its thread takes the caller's
// credentials for good, and dies with them at close.
func newGate(as *Identity) (*gate, error) {
	g := &gate{as: as, held: make(map[gateKey]*heldFile)}
	if as == nil {
		return g, nil
	}
	g.work = make(chan func())
	ready := make(chan error, 1)
	go func() {
		// Never unlocked: the thread exits with the goroutine, and its
		// credentials with it.
		runtime.LockOSThread()
		if err := become(as); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for f := range g.work {
			f()
		}
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("take the caller's credentials: %w", err)
	}
	return g, nil
}

// asCaller runs f with the caller's rights (at once for a privileged
// restore).
func (g *gate) asCaller(f func()) {
	if g.work == nil {
		f()
		return
	}
	done := make(chan struct{})
	g.work <- func() { f(); close(done) }
	<-done
}

// open looks path up for access (R_OK, W_OK, X_OK bits; 0 for none) and
// returns the path through which a task opens that very file. want, when
// not nil, says what the image saw there: the file found must be that one
// (see "Which file found by path is the file the image saw").
func (g *gate) open(path string, access uint32, want *expect) (string, error) {
	key := gateKey{path, access}
	h, ok := g.held[key]
	if !ok {
		var err error
		var f *os.File
		g.asCaller(func() {
			var fd int
			fd, err = unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				err = &os.PathError{Op: "open", Path: path, Err: err}
				return
			}
			f = os.NewFile(uintptr(fd), path)
			if g.as != nil && access != 0 {
				if e := unix.Faccessat2(fd, "", access, unix.AT_EMPTY_PATH|unix.AT_EACCESS); e != nil {
					f.Close()
					err = fmt.Errorf("%s: the restoring user may not open it: %w", path, e)
				}
			}
		})
		if err != nil {
			return "", err
		}
		h = &heldFile{f: f}
		g.held[key] = h
	}
	if want != nil {
		if err := g.check(path, h, want); err != nil {
			return "", err
		}
	}
	return procfs.FDPath(os.Getpid(), int(h.f.Fd())), nil
}

// accessOf is what open flags ask of a file.
func accessOf(flags uint32) uint32 {
	switch flags & unix.O_ACCMODE {
	case unix.O_WRONLY:
		return unix.W_OK
	case unix.O_RDWR:
		return unix.R_OK | unix.W_OK
	}
	return unix.R_OK
}

// close lets go of the files and ends the caller's thread.
func (g *gate) close() {
	for _, h := range g.held {
		h.f.Close()
	}
	if g.work != nil {
		close(g.work)
	}
}

// become gives the calling thread, and it alone, id's filesystem
// credentials: raw system calls, because the C library's and Go's wrappers
// change every thread of the process.
func become(id *Identity) error {
	groups := make([]uint32, len(id.Groups))
	copy(groups, id.Groups)
	var gp unsafe.Pointer
	if len(groups) > 0 {
		gp = unsafe.Pointer(&groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(gp), 0); e != 0 {
		return os.NewSyscallError("setgroups", e)
	}
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(id.Gid), 0, 0)
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(id.Uid), 0, 0)
	// setfs*id report the previous id, not errors: ask again (-1 changes
	// nothing) to learn whether it took.
	if got, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); uint32(got) != id.Uid {
		return fmt.Errorf("setfsuid(%d) left %d", id.Uid, got)
	}
	if got, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0); uint32(got) != id.Gid {
		return fmt.Errorf("setfsgid(%d) left %d", id.Gid, got)
	}
	// Only the caller's capabilities: a uid 0 without CAP_DAC_OVERRIDE must
	// not read what root could.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return os.NewSyscallError("capget", err)
	}
	for i := range data {
		data[i].Effective &= uint32(id.CapEff >> (32 * i))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return os.NewSyscallError("capset", e)
	}
	return nil
}
