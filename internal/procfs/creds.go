package procfs

import "github.com/ckptfs/ckptfs/image"

// ImageCreds are the task's credentials as the image keeps them: the one
// conversion that checkpoint (which records them) and restart (which
// compares a task's with the ones it runs with) share.
func (s *Status) ImageCreds() *image.Creds {
	c := &image.Creds{CapInh: s.CapInh, CapPrm: s.CapPrm, CapEff: s.CapEff, CapBnd: s.CapBnd, CapAmb: s.CapAmb}
	for i := range c.Uid {
		c.Uid[i], c.Gid[i] = uint32(s.Uid[i]), uint32(s.Gid[i])
	}
	for _, g := range s.Groups {
		c.Groups = append(c.Groups, uint32(g))
	}
	return c
}
