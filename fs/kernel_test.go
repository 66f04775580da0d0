package fs

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// kernel drives a root through go-fuse's own bridge, as the kernel would
// through /dev/fuse, without a mount: requests carry a caller's uid, gid
// and pid, and what go-fuse adds between the kernel and the nodes (the
// node tree, file handles, which of node and handle serves an operation)
// is what the nodes get.
type kernel struct {
	t   *testing.T
	raw fuse.RawFileSystem
	r   *root
}

func newKernel(t *testing.T, r *root) *kernel {
	var zero time.Duration
	raw := gofs.NewNodeFS(r, &gofs.Options{EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero, Logger: r.cfg.Logger})
	return &kernel{t: t, raw: raw, r: r}
}

// user is a caller: a uid and gid, and a live process standing for its
// thread (the daemon reads its /proc status, and asks whether it is
// dying).
type user struct {
	uid, gid uint32
	pid      int
}

// newUser starts a process to stand for a caller of uid.
func newUser(t *testing.T, uid uint32) user {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep to start: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return user{uid: uid, gid: uid, pid: cmd.Process.Pid}
}

func (u user) header(node uint64) fuse.InHeader {
	return fuse.InHeader{NodeId: node, Caller: fuse.Caller{Owner: fuse.Owner{Uid: u.uid, Gid: u.gid}, Pid: uint32(u.pid)}}
}

// privileged makes hasCap report every capability for the users given,
// none for anyone else.
func privileged(t *testing.T, users ...user) {
	was := hasCap
	hasCap = func(tid int, _ uint) bool {
		for _, u := range users {
			if u.pid == tid {
				return true
			}
		}
		return false
	}
	t.Cleanup(func() { hasCap = was })
}

func errnoOf(st fuse.Status) syscall.Errno { return syscall.Errno(st) }

func (k *kernel) lookup(u user, parent uint64, name string) (uint64, fuse.Attr, syscall.Errno) {
	var out fuse.EntryOut
	st := k.raw.Lookup(nil, &fuse.InHeader{NodeId: parent, Caller: u.header(parent).Caller}, name, &out)
	if st == fuse.OK && out.NodeId == 0 {
		return 0, out.Attr, syscall.ENOENT // a negative entry
	}
	return out.NodeId, out.Attr, errnoOf(st)
}

// restoreDir looks restore/ up.
func (k *kernel) restoreDir(u user) uint64 {
	k.t.Helper()
	node, _, e := k.lookup(u, 1, "restore")
	if e != 0 {
		k.t.Fatalf("lookup restore: %v", e)
	}
	return node
}

func (k *kernel) create(u user, parent uint64, name string, flags uint32) (node, fh uint64, e syscall.Errno) {
	in := &fuse.CreateIn{InHeader: u.header(parent), Flags: flags | syscall.O_CREAT, Mode: 0o644}
	var out fuse.CreateOut
	st := k.raw.Create(nil, in, name, &out)
	return out.NodeId, out.Fh, errnoOf(st)
}

func (k *kernel) open(u user, node uint64, flags uint32) (uint64, syscall.Errno) {
	var out fuse.OpenOut
	st := k.raw.Open(nil, &fuse.OpenIn{InHeader: u.header(node), Flags: flags}, &out)
	return out.Fh, errnoOf(st)
}

func (k *kernel) write(u user, node, fh uint64, off int64, data []byte) syscall.Errno {
	n, st := k.raw.Write(nil, &fuse.WriteIn{InHeader: u.header(node), Fh: fh, Offset: uint64(off), Size: uint32(len(data))}, data)
	if st == fuse.OK && int(n) != len(data) {
		k.t.Fatalf("short write: %d of %d", n, len(data))
	}
	return errnoOf(st)
}

func (k *kernel) flush(u user, node, fh uint64) syscall.Errno {
	return errnoOf(k.raw.Flush(nil, &fuse.FlushIn{InHeader: u.header(node), Fh: fh}))
}

func (k *kernel) release(u user, node, fh uint64) {
	k.raw.Release(nil, &fuse.ReleaseIn{InHeader: u.header(node), Fh: fh})
}

// truncate is what the kernel sends after an open with O_TRUNC.
func (k *kernel) truncate(u user, node, fh uint64, size uint64) syscall.Errno {
	in := &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{
		InHeader: u.header(node), Valid: fuse.FATTR_SIZE | fuse.FATTR_FH | fuse.FATTR_MTIME | fuse.FATTR_CTIME, Fh: fh, Size: size,
	}}
	var out fuse.AttrOut
	return errnoOf(k.raw.SetAttr(nil, in, &out))
}

func (k *kernel) getattr(u user, node uint64) (fuse.Attr, syscall.Errno) {
	var out fuse.AttrOut
	st := k.raw.GetAttr(nil, &fuse.GetAttrIn{InHeader: u.header(node)}, &out)
	return out.Attr, errnoOf(st)
}

func (k *kernel) unlink(u user, parent uint64, name string) syscall.Errno {
	return errnoOf(k.raw.Unlink(nil, &fuse.InHeader{NodeId: parent, Caller: u.header(parent).Caller}, name))
}

// readAll opens node for reading, reads it through and closes it.
func (k *kernel) readAll(u user, node uint64) ([]byte, syscall.Errno) {
	fh, e := k.open(u, node, syscall.O_RDONLY)
	if e != 0 {
		return nil, e
	}
	defer k.release(u, node, fh)
	var data []byte
	buf := make([]byte, 4096)
	for {
		res, st := k.raw.Read(nil, &fuse.ReadIn{InHeader: u.header(node), Fh: fh, Offset: uint64(len(data)), Size: uint32(len(buf))}, buf)
		if st != fuse.OK {
			return nil, errnoOf(st)
		}
		b, _ := res.Bytes(buf)
		if len(b) == 0 {
			return data, 0
		}
		data = append(data, b...)
	}
}

// writeImage creates (or, if it exists, opens with O_TRUNC as cp does)
// restore/<name> and writes img, leaving the file open: the restore
// ends with close.
func (k *kernel) writeImage(u user, dir uint64, name string, img []byte) (node, fh uint64, e syscall.Errno) {
	node, _, e = k.lookup(u, dir, name)
	switch {
	case e == syscall.ENOENT:
		node, fh, e = k.create(u, dir, name, syscall.O_WRONLY|syscall.O_TRUNC)
	case e == 0:
		fh, e = k.open(u, node, syscall.O_WRONLY|syscall.O_TRUNC)
		if e == 0 {
			e = k.truncate(u, node, fh, 0)
		}
	}
	if e != 0 {
		return node, fh, e
	}
	return node, fh, k.write(u, node, fh, 0, img)
}

// close ends the image written to fh: its Flush returns the restore's
// errno.
func (k *kernel) close(u user, node, fh uint64) syscall.Errno {
	e := k.flush(u, node, fh)
	k.release(u, node, fh)
	return e
}
