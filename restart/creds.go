package restart

import (
	"encoding/binary"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/procfs"
)

// setCreds gives the task its credentials back, last, since every step
// before needs the restorer's privileges: the bounding set is cut while
// the task may still (CAP_SETPCAP), groups and ids are set with
// PR_SET_KEEPCAPS so that capset can then give the capability sets their
// recorded values, and ambient capabilities are raised from those.
func (p *proc) setCreds(c *image.Creds, rsp uint64) error {
	step := func(what string, nr uintptr, args ...uint64) error {
		if _, err := p.syscall(nr, args...); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := step("keep capabilities", unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return err
	}
	last := lastCap()
	for cp := 0; cp <= last; cp++ {
		if c.CapBnd&(1<<cp) == 0 {
			if err := step("drop from the bounding set", unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uint64(cp), 0, 0, 0); err != nil {
				return err
			}
		}
	}
	groups := make([]byte, 4*len(c.Groups))
	for i, g := range c.Groups {
		binary.LittleEndian.PutUint32(groups[4*i:], g)
	}
	err := p.withStackArg(rsp, append(groups, 0, 0, 0, 0), func(addr uint64) error {
		return step("setgroups", unix.SYS_SETGROUPS, uint64(len(c.Groups)), addr)
	})
	if err != nil {
		return err
	}
	if err := step("setresgid", unix.SYS_SETRESGID, uint64(c.Gid[0]), uint64(c.Gid[1]), uint64(c.Gid[2])); err != nil {
		return err
	}
	p.syscall(unix.SYS_SETFSGID, uint64(c.Gid[3])) // returns the old id, never an error
	if err := step("setresuid", unix.SYS_SETRESUID, uint64(c.Uid[0]), uint64(c.Uid[1]), uint64(c.Uid[2])); err != nil {
		return err
	}
	p.syscall(unix.SYS_SETFSUID, uint64(c.Uid[3]))
	// capset: struct __user_cap_header_struct {version, pid}, then two
	// struct __user_cap_data_struct {effective, permitted, inheritable}.
	capArg := make([]byte, 32)
	le := binary.LittleEndian
	le.PutUint32(capArg, unix.LINUX_CAPABILITY_VERSION_3)
	for i, set := range []uint64{c.CapEff, c.CapPrm, c.CapInh} {
		le.PutUint32(capArg[8+4*i:], uint32(set))
		le.PutUint32(capArg[20+4*i:], uint32(set>>32))
	}
	err = p.withStackArg(rsp, capArg, func(addr uint64) error {
		return step("capset", unix.SYS_CAPSET, addr, addr+8)
	})
	if err != nil {
		return err
	}
	for cp := 0; cp <= last; cp++ {
		if c.CapAmb&(1<<cp) != 0 {
			if err := step("raise ambient", unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uint64(cp), 0, 0); err != nil {
				return err
			}
		}
	}
	return step("keep capabilities off", unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0, 0, 0)
}

// lastCap is the highest capability this kernel knows.
func lastCap() int {
	n, err := procfs.CapLastCap()
	if err != nil {
		return unix.CAP_CHECKPOINT_RESTORE // the last as of Linux 5.9
	}
	return n
}

// credsOfTask reads a task's credentials as the image keeps them.
func credsOfTask(tid int) (*image.Creds, error) {
	st, err := procfs.ReadStatus(tid)
	if err != nil {
		return nil, err
	}
	return st.ImageCreds(), nil
}

// sameCreds reports whether two sets of credentials are equal.
func sameCreds(a, b *image.Creds) bool {
	return b != nil && a.Uid == b.Uid && a.Gid == b.Gid && slices.Equal(a.Groups, b.Groups) &&
		a.CapInh == b.CapInh && a.CapPrm == b.CapPrm && a.CapEff == b.CapEff && a.CapBnd == b.CapBnd && a.CapAmb == b.CapAmb
}
