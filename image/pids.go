package image

// PIDS payload (record type 101), little-endian:
//
//	u32 nr_ns                      pid namespaces; namespace tag i+1 is entry i
//	u32 nr_pids                    pid objects; pid tag i+1 is entry i
//	u32 nr_vpids                   sum of the depths (linux-cr's count of
//	                               numbers beyond the first of each pid)
//	nr_ns   × { u32 parent tag }   0 for tag 1, else a tag in [1, own tag)
//	nr_pids × { u32 depth,
//	            (depth+1) × { u32 ns tag, i32 nr } }   root's level first
//
// The record length is therefore exactly
// 12 + 4·nr_ns + 12·nr_pids + 8·nr_vpids, which the decoder checks before
// it allocates anything.
func appendPids(b []byte, p *Pids) []byte {
	start := len(b)
	b = appendRecord(b, RecPids)
	vpids := 0
	for _, pid := range p.Pids {
		vpids += max(len(pid.Levels)-1, 0)
	}
	b = le.AppendUint32(b, uint32(len(p.NS)))
	b = le.AppendUint32(b, uint32(len(p.Pids)))
	b = le.AppendUint32(b, uint32(vpids))
	for _, ns := range p.NS {
		b = le.AppendUint32(b, uint32(ns.Parent))
	}
	for _, pid := range p.Pids {
		// A pid without levels is encoded with depth 0xffffffff so that
		// the decoder refuses it rather than the encoder misframing it.
		b = le.AppendUint32(b, uint32(len(pid.Levels)-1))
		for _, l := range pid.Levels {
			b = le.AppendUint32(b, uint32(l.NS))
			b = le.AppendUint32(b, uint32(l.Nr))
		}
	}
	finishRecord(b, start)
	return b
}

// pidsInfo is what TREE validation needs to know about a PIDS section.
type pidsInfo struct {
	pids    *Pids
	nsLevel []int // nsLevel[tag] is the level of namespace tag below tag 1; [0] unused
}

// innermost returns the namespace tag of a pid's deepest level.
func (pi *pidsInfo) innermost(tag Tag) Tag {
	l := pi.pids.Pids[tag-1].Levels
	return l[len(l)-1].NS
}

// within reports whether namespace ns is outer or one of its descendants.
func (pi *pidsInfo) within(ns, outer Tag) bool {
	for pi.nsLevel[ns] > pi.nsLevel[outer] {
		ns = pi.pids.NS[ns-1].Parent
	}
	return ns == outer
}

// decodePids decodes and validates a PIDS payload: every namespace's parent
// is defined before it, every pid's levels follow the namespace chain from
// tag 1 downwards, numbers are positive and unique within their namespace,
// and nr_vpids matches the depths.
func decodePids(h recHeader, payload []byte) (*Pids, *pidsInfo, error) {
	dec := newDecoder(h, payload)
	d := &dec
	nrNS := d.count("nr_ns", MaxPidNS, 4)
	nrPids := d.count("nr_pids", MaxPids, 12)
	vOff := d.off()
	nrVpids := d.count("nr_vpids", MaxPids*MaxPidLevel, 8)
	if d.err != nil {
		return nil, nil, d.err
	}
	if nrNS == 0 || nrPids == 0 {
		d.failAt(d.base, ErrInvalid, "%d namespaces and %d pids: an image has at least one of each", nrNS, nrPids)
		return nil, nil, d.err
	}
	if want := 4*nrNS + 12*nrPids + 8*nrVpids; want != d.remaining() {
		d.failAt(d.base, ErrLength, "%d namespaces, %d pids and %d deeper numbers take %d bytes, the record holds %d",
			nrNS, nrPids, nrVpids, want, d.remaining())
		return nil, nil, d.err
	}

	p := &Pids{NS: make([]PidNS, nrNS), Pids: make([]Pid, nrPids)}
	info := &pidsInfo{pids: p, nsLevel: make([]int, nrNS+1)}
	for i := range p.NS {
		tag := Tag(i + 1)
		off := d.off()
		parent := Tag(d.u32("namespace parent"))
		if d.err == nil {
			d.breakAt(off, nsRule(tag, parent, info))
		}
		p.NS[i].Parent = parent
	}

	// One backing array for every level of every pid: the record length
	// already bounds it, and it saves an allocation per pid.
	levels := make([]PidLevel, nrPids+nrVpids)
	seen := make(numbersSeen, nrPids)
	used := 0
	for i := range p.Pids {
		tag := Tag(i + 1)
		off := d.off()
		depth := d.u32("pid depth")
		if d.err != nil {
			break
		}
		if depth > MaxPidLevel {
			d.failAt(off, ErrNamespace, "pid %d: depth %d exceeds the kernel's %d levels", tag, depth, MaxPidLevel)
			break
		}
		n := int(depth) + 1
		if used+n > len(levels) {
			d.failAt(vOff, ErrLength, "pid %d: depths add up to more than nr_vpids %d", tag, nrVpids)
			break
		}
		pl := levels[used : used+n : used+n]
		used += n
		for k := range pl {
			off := d.off()
			lv := PidLevel{NS: Tag(d.u32("pid namespace")), Nr: int32(d.u32("pid number"))}
			if d.err != nil {
				break
			}
			var prev PidLevel
			if k > 0 {
				prev = pl[k-1]
			}
			if b, onNumber := levelRule(p, tag, k, lv, prev); b != nil {
				if onNumber {
					off += 4
				}
				d.breakAt(off, b)
				break
			}
			if b := seen.add(tag, k, lv); b != nil {
				d.breakAt(off+4, b)
				break
			}
			pl[k] = lv
		}
		p.Pids[i].Levels = pl
	}
	if d.err == nil && used != len(levels) {
		d.failAt(vOff, ErrLength, "nr_vpids is %d but the pids' depths add up to %d", nrVpids, used-nrPids)
	}
	if err := d.end(); err != nil {
		return nil, nil, err
	}
	return p, info, nil
}
