package image

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
)

// Reading two images for a diff.
//
// The pages of two images are compared as both stream by, never held: the
// two Readers advance task by task, and the tasks of one process (matched
// by pid at the root's level) are read together, their PAGES merged by
// address and compared page by page. The tasks of a tree come in the same
// order in two checkpoints of it (ckptfs writes a process, its threads,
// then its children's subtrees, each level sorted by pid), so this is the
// rule. Should a matched task come earlier in one image than its order in
// the other allows (pids that wrapped around), it is read ahead alone and
// only the CRC32C of each of its pages is kept ("parked"), to be compared
// with its partner's pages when those come: memory then grows by 16 bytes
// a page, for those tasks only.

// diffSide is one of the two images.
type diffSide struct {
	name   string
	r      *Reader
	rep    *Report
	keys   []int32 // every task's pid at the root's level
	parked map[int]*parkedTask
}

// parkedTask is a task read ahead of its partner: its detail's index and
// the checksum of each of its pages, in address order.
type parkedTask struct {
	index int
	pages []pageSum
}

type pageSum struct {
	addr uint64
	sum  uint32
}

// openDiffSide reads an image's HEADER, PIDS and TREE.
func openDiffSide(name string, rd io.Reader) (*diffSide, error) {
	r := NewReader(bufio.NewReaderSize(rd, 256<<10))
	rep, err := startReport(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &diffSide{name: name, r: r, rep: rep, parked: make(map[int]*parkedTask)}
	s.keys = make([]int32, len(rep.Image.Tree.Tasks))
	for i, t := range rep.Image.Tree.Tasks {
		if nums := rep.Image.pidNumbersOf(t.Pid); len(nums) > 0 {
			s.keys[i] = nums[0]
		}
	}
	return s, nil
}

func (s *diffSide) fail(err error) error { return fmt.Errorf("%s: %w", s.name, err) }

// next reads the next TASK record and returns the cursor over its records.
func (s *diffSide) next(contents bool) (*taskCursor, int, error) {
	ts, err := s.r.NextTask()
	if err != nil { // io.EOF cannot come before the TREE's count of tasks
		return nil, 0, s.fail(err)
	}
	i := len(s.rep.Details)
	return s.rep.addTask(s.r, ts, contents), i, nil
}

// alone reads the next task, whose partner (if any) comes later in the
// other image: with park, the checksums of its pages are kept for it.
func (s *diffSide) alone(park bool) error {
	c, i, err := s.next(park)
	if err != nil {
		return err
	}
	if !park {
		return s.wrap(c.drain())
	}
	p := &parkedTask{index: i}
	for {
		more, err := c.next()
		if err != nil {
			return s.fail(err)
		}
		if !more {
			break
		}
		p.pages = append(p.pages, pageSum{c.addr, crc32.Checksum(c.page, castagnoli)})
	}
	s.parked[i] = p
	return nil
}

func (s *diffSide) wrap(err error) error {
	if err != nil {
		return s.fail(err)
	}
	return nil
}

// end reads the TAIL once every task is read, which verifies the image.
func (s *diffSide) end() error {
	if _, err := s.r.NextTask(); err != io.EOF {
		if err == nil {
			err = formatErr("TASK", s.r.Offset(), ErrOrder, "more TASK records than the TREE lists")
		}
		return s.fail(err)
	}
	s.rep.finish()
	return nil
}

// pageStream yields one task's pages in address order: a live cursor
// (contents at hand) or a parked task (checksums only).
type pageStream struct {
	side   *diffSide
	c      *taskCursor
	parked *parkedTask
	i      int
	addr   uint64
	sum    uint32
}

func (p *pageStream) next() (bool, error) {
	if p.c != nil {
		more, err := p.c.next()
		if err != nil {
			return false, p.side.fail(err)
		}
		p.addr = p.c.addr
		return more, nil
	}
	if p.i >= len(p.parked.pages) {
		return false, nil
	}
	p.addr, p.sum = p.parked.pages[p.i].addr, p.parked.pages[p.i].sum
	p.i++
	return true, nil
}

// checksum is the CRC32C of the current page.
func (p *pageStream) checksum() uint32 {
	if p.c != nil {
		return crc32.Checksum(p.c.page, castagnoli)
	}
	return p.sum
}

// samePage reports whether the current pages of a and b hold the same
// bytes: compared whole when both are at hand, else by checksum.
func samePage(a, b *pageStream) bool {
	if a.c != nil && b.c != nil {
		return bytes.Equal(a.c.page, b.c.page)
	}
	return a.checksum() == b.checksum()
}

// readPair reads task ia of a and task ib of b, one of which may be parked
// already, merging their pages into a pageDiff.
func readPair(a, b *diffSide, ia, ib int) (*pageDiff, error) {
	streams := [2]*pageStream{}
	for k, s := range []*diffSide{a, b} {
		i := ia
		if k == 1 {
			i = ib
		}
		if p, ok := s.parked[i]; ok {
			streams[k] = &pageStream{side: s, parked: p}
			delete(s.parked, i)
			continue
		}
		c, _, err := s.next(true)
		if err != nil {
			return nil, err
		}
		streams[k] = &pageStream{side: s, c: c}
	}
	sa, sb := streams[0], streams[1]
	okA, err := sa.next()
	if err != nil {
		return nil, err
	}
	okB, err := sb.next()
	if err != nil {
		return nil, err
	}
	// Every record before the pages is read now, the MM records too.
	pd := newPageDiff(a.rep.Details[ia].Memory, b.rep.Details[ib].Memory, uint64(a.rep.Image.Header.PageSize))
	pd.crc = sa.c == nil || sb.c == nil
	for okA || okB {
		switch {
		case okA && (!okB || sa.addr < sb.addr):
			pd.onlyA(sa.addr)
			okA, err = sa.next()
		case okB && (!okA || sb.addr < sa.addr):
			pd.onlyB(sb.addr)
			okB, err = sb.next()
		default:
			pd.both(sa.addr, samePage(sa, sb))
			if okA, err = sa.next(); err == nil {
				okB, err = sb.next()
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return pd, nil
}

// diffRead reads both images through, pairing the tasks of the same pid,
// and returns the page comparison of each pair by the pair's index in a.
func diffRead(a, b *diffSide) (map[int]*pageDiff, error) {
	nA, nB := len(a.keys), len(b.keys)
	inB := make(map[int32]int, nB)
	for j, k := range b.keys {
		inB[k] = j
	}
	partnerA := make([]int, nA) // index in b, or -1
	partnerB := make([]int, nB)
	for j := range partnerB {
		partnerB[j] = -1
	}
	for i, k := range a.keys {
		partnerA[i] = -1
		if j, ok := inB[k]; ok && partnerB[j] < 0 {
			partnerA[i], partnerB[j] = j, i
		}
	}
	pages := make(map[int]*pageDiff)
	ia, ib := 0, 0
	for ia < nA || ib < nB {
		var err error
		switch {
		case ia < nA && partnerA[ia] < 0:
			err = a.alone(false)
			ia++
		case ib < nB && partnerB[ib] < 0:
			err = b.alone(false)
			ib++
		case ib < nB && partnerB[ib] < ia:
			// Its partner was read ahead (only a's tasks are, so a
			// task of b is never read before its partner).
			pages[partnerB[ib]], err = readPair(a, b, partnerB[ib], ib)
			ib++
		case partnerA[ia] == ib:
			pages[ia], err = readPair(a, b, ia, ib)
			ia++
			ib++
		default:
			// Both partners lie ahead: read a's task ahead.
			err = a.alone(true)
			ia++
		}
		if err != nil {
			return nil, err
		}
	}
	if err := a.end(); err != nil {
		return nil, err
	}
	if err := b.end(); err != nil {
		return nil, err
	}
	return pages, nil
}
