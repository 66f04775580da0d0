package image

import (
	"cmp"
	"slices"
)

// pageDiff compares the mappings of one process in two images and counts
// its pages, mapping by mapping, as the merge of both images' PAGES meets
// them.
type pageDiff struct {
	ma, mb  *MemoryDetail
	ps      uint64
	crc     bool       // contents compared by checksum (a parked task)
	entries []mapEntry // the mappings of both, paired
	ofA     []int      // entry of each mapping of A
	ofB     []int      // and of B
	outside mapEntry   // pages in no mapping
	total   PagesDiff  // the whole process
}

// mapEntry is a mapping of A, of B, or of both (a pair).
type mapEntry struct {
	a, b  int // mapping indexes, -1 for none
	moved bool
	pages PagesDiff
}

// newPageDiff pairs the mappings of two address spaces: by start address
// first, then, among those left, a file mapping with the mapping of the
// same file at the same offset and of the same size, and a special mapping
// (heap, stack, vdso...) with the same special one: those moved.
func newPageDiff(ma, mb *MemoryDetail, ps uint64) *pageDiff {
	ma, mb = orZero(ma), orZero(mb)
	pd := &pageDiff{ma: ma, mb: mb, ps: ps, ofA: make([]int, len(ma.Mappings)), ofB: make([]int, len(mb.Mappings)),
		outside: mapEntry{a: -1, b: -1}}
	for i := range pd.ofA {
		pd.ofA[i] = -1
	}
	for j := range pd.ofB {
		pd.ofB[j] = -1
	}
	pair := func(i, j int, moved bool) {
		pd.ofA[i], pd.ofB[j] = len(pd.entries), len(pd.entries)
		pd.entries = append(pd.entries, mapEntry{a: i, b: j, moved: moved})
	}
	for i, j := 0, 0; i < len(ma.Mappings) && j < len(mb.Mappings); {
		switch sa, sb := ma.Mappings[i].Start, mb.Mappings[j].Start; {
		case sa < sb:
			i++
		case sb < sa:
			j++
		default:
			pair(i, j, false)
			i++
			j++
		}
	}
	for i := range ma.Mappings {
		if pd.ofA[i] >= 0 {
			continue
		}
		va := &ma.Mappings[i]
		for j := range mb.Mappings {
			if vb := &mb.Mappings[j]; pd.ofB[j] < 0 && sameObject(va, vb) {
				pair(i, j, true)
				break
			}
		}
	}
	for i := range ma.Mappings {
		if pd.ofA[i] < 0 {
			pd.ofA[i] = len(pd.entries)
			pd.entries = append(pd.entries, mapEntry{a: i, b: -1})
		}
	}
	for j := range mb.Mappings {
		if pd.ofB[j] < 0 {
			pd.ofB[j] = len(pd.entries)
			pd.entries = append(pd.entries, mapEntry{a: -1, b: j})
		}
	}
	return pd
}

// sameObject reports whether two mappings at different addresses map the
// same thing: the same file range, or the same special mapping.
func sameObject(a, b *MappingDetail) bool {
	if a.Special != "" || b.Special != "" {
		return a.Special == b.Special
	}
	return !a.Anon && !b.Anon && a.Path == b.Path && a.Dev == b.Dev && a.Ino == b.Ino &&
		a.Offset == b.Offset && a.Size == b.Size
}

// entryAt returns the entry of the mapping of m holding addr.
func (pd *pageDiff) entryAt(m *MemoryDetail, of []int, addr uint64) *mapEntry {
	if i := m.find(addr); i >= 0 {
		return &pd.entries[of[i]]
	}
	return nil
}

// onlyA counts a page only A holds.
func (pd *pageDiff) onlyA(addr uint64) {
	e := pd.entryAt(pd.ma, pd.ofA, addr)
	if e == nil {
		e = &pd.outside
	}
	e.pages.A++
	e.pages.Removed++
	pd.total.A++
	pd.total.Removed++
}

// onlyB counts a page only B holds.
func (pd *pageDiff) onlyB(addr uint64) {
	e := pd.entryAt(pd.mb, pd.ofB, addr)
	if e == nil {
		e = &pd.outside
	}
	e.pages.B++
	e.pages.Added++
	pd.total.B++
	pd.total.Added++
}

// both counts a page both hold at addr: in the entry of each one's
// mapping, and, if it differs, as changed in B's (A's if B's has none).
func (pd *pageDiff) both(addr uint64, same bool) {
	ea, eb := pd.entryAt(pd.ma, pd.ofA, addr), pd.entryAt(pd.mb, pd.ofB, addr)
	changedIn := eb
	if changedIn == nil {
		changedIn = ea
	}
	if ea == nil {
		ea = &pd.outside
	}
	if eb == nil {
		eb = &pd.outside
	}
	if changedIn == nil {
		changedIn = &pd.outside
	}
	ea.pages.A++
	eb.pages.B++
	pd.total.A++
	pd.total.B++
	if !same {
		changedIn.pages.Changed++
		pd.total.Changed++
	}
}

// finishPages fills in the bytes and the method of a count.
func (pd *pageDiff) finishPages(p *PagesDiff) {
	p.BytesA, p.BytesB = p.A*int64(pd.ps), p.B*int64(pd.ps)
	p.Checksum = pd.crc
}

// mappingDiffs lists the mappings that differ, by address (B's, else
// A's), the pages outside every mapping last.
func (pd *pageDiff) mappingDiffs() []MappingDiff {
	pd.finishPages(&pd.total)
	var out []MappingDiff
	type keyed struct {
		addr uint64
		d    MappingDiff
	}
	var list []keyed
	for k := range pd.entries {
		e := &pd.entries[k]
		md := MappingDiff{}
		var va, vb *MappingDetail
		if e.a >= 0 {
			va = &pd.ma.Mappings[e.a]
			md.A = mappingRef(va)
		}
		if e.b >= 0 {
			vb = &pd.mb.Mappings[e.b]
			md.B = mappingRef(vb)
		}
		switch {
		case va == nil:
			md.Change = "added"
		case vb == nil:
			md.Change = "removed"
		case e.moved:
			md.Change = "moved"
		case va.End != vb.End:
			md.Change = "resized"
		}
		if va != nil && vb != nil {
			var c changes
			c.add("prot", va.Prot, vb.Prot)
			c.add("shared", va.Shared, vb.Shared)
			c.add("anon", va.Anon, vb.Anon)
			c.add("path", va.Path, vb.Path)
			if !e.moved {
				c.add("offset", va.Offset, vb.Offset)
			}
			c.add("dev", va.Dev, vb.Dev)
			c.add("ino", va.Ino, vb.Ino)
			c.addFileID(va.Identity, vb.Identity)
			md.Fields = c
			if md.Change == "" && len(c) > 0 {
				md.Change = "changed"
			}
		}
		if md.Change == "" && e.pages.differs() {
			md.Change = "pages"
		}
		if md.Change == "" {
			continue
		}
		if e.pages.A != 0 || e.pages.B != 0 {
			p := e.pages
			pd.finishPages(&p)
			md.Pages = &p
		}
		addr := uint64(0)
		if vb != nil {
			addr = uint64(vb.Start)
		} else {
			addr = uint64(va.Start)
		}
		list = append(list, keyed{addr, md})
	}
	slices.SortStableFunc(list, func(x, y keyed) int { return cmp.Compare(x.addr, y.addr) })
	for _, k := range list {
		out = append(out, k.d)
	}
	if o := pd.outside.pages; o.A != 0 || o.B != 0 {
		pd.finishPages(&o)
		out = append(out, MappingDiff{Change: "outside", Pages: &o})
	}
	return out
}

func mappingRef(v *MappingDetail) *MappingRef {
	return &MappingRef{Start: v.Start, End: v.End, Prot: mapProt(v), Kind: mappingKind(v), Path: v.Path}
}
