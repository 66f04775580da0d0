package procfs

import (
	"encoding/binary"
	"os"
)

// Pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	PagePresent = 1 << 63
	PageSwapped = 1 << 62
	PageFile    = 1 << 61 // file-backed or shared-anonymous page
)

// Pagemap reads /proc/<pid>/pagemap: one 64-bit entry per virtual page.
type Pagemap struct {
	f *os.File
}

// OpenPagemap opens the pagemap of pid.
func OpenPagemap(pid int) (*Pagemap, error) {
	f, err := os.Open(pidDir(pid) + "/pagemap")
	if err != nil {
		return nil, err
	}
	return &Pagemap{f: f}, nil
}

// Read fills entries with the entries of the pages from addr on.
func (p *Pagemap) Read(addr uint64, pageSize int, entries []uint64) error {
	buf := make([]byte, 8*len(entries))
	if _, err := p.f.ReadAt(buf, int64(addr/uint64(pageSize))*8); err != nil {
		return err
	}
	for i := range entries {
		entries[i] = binary.LittleEndian.Uint64(buf[8*i:])
	}
	return nil
}

func (p *Pagemap) Close() error { return p.f.Close() }
