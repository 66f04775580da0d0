package image

// RecCreds is the per-thread record of credentials.
const RecCreds = 105

// MaxGroups caps the supplementary groups (NGROUPS_MAX).
const MaxGroups = 65536

// Creds are a task's credentials: real, effective, saved and filesystem
// ids, supplementary groups, and the five capability sets.
type Creds struct {
	Uid, Gid               [4]uint32
	Groups                 []uint32
	CapInh, CapPrm, CapEff uint64
	CapBnd, CapAmb         uint64
}

// CREDS payload: 4 uids, 4 gids (u32), u32 count + groups, then the
// inheritable, permitted, effective, bounding and ambient sets (u64).
func appendCreds(b []byte, c *Creds) []byte {
	for _, id := range c.Uid {
		b = le.AppendUint32(b, id)
	}
	for _, id := range c.Gid {
		b = le.AppendUint32(b, id)
	}
	b = le.AppendUint32(b, uint32(len(c.Groups)))
	for _, g := range c.Groups {
		b = le.AppendUint32(b, g)
	}
	for _, set := range []uint64{c.CapInh, c.CapPrm, c.CapEff, c.CapBnd, c.CapAmb} {
		b = le.AppendUint64(b, set)
	}
	return b
}

func decodeCreds(h recHeader, payload []byte) (*Creds, error) {
	d := newDecoder(h, payload)
	c := &Creds{}
	for i := range c.Uid {
		c.Uid[i] = d.u32("uid")
	}
	for i := range c.Gid {
		c.Gid[i] = d.u32("gid")
	}
	if n := d.count("nr_groups", MaxGroups, 4); n > 0 {
		c.Groups = make([]uint32, n)
		for i := range c.Groups {
			c.Groups[i] = d.u32("group")
		}
	}
	c.CapInh, c.CapPrm, c.CapEff = d.u64("inheritable"), d.u64("permitted"), d.u64("effective")
	c.CapBnd, c.CapAmb = d.u64("bounding"), d.u64("ambient")
	if d.err == nil && (c.CapEff&^c.CapPrm != 0 || c.CapAmb&^(c.CapPrm&c.CapInh) != 0) {
		d.fail(ErrInvalid, "capability sets the kernel never makes (effective %#x, ambient %#x beyond permitted %#x)",
			c.CapEff, c.CapAmb, c.CapPrm)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return c, nil
}

// WriteCreds writes the CREDS record of the current task.
func (w *Writer) WriteCreds(c *Creds) error { return w.writeSmall(RecCreds, appendCreds(nil, c)) }

// ReadCreds decodes the CREDS record rec that NextRecord returned.
func (r *Reader) ReadCreds(rec Record) (*Creds, error) { return readSmall(r, rec, decodeCreds) }
