package procfs

import (
	"encoding/binary"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
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

// The page categories of PAGEMAP_SCAN (linux/fs.h).
const (
	ScanFile    = 1 << 2 // file-backed or shared-anonymous page
	ScanPresent = 1 << 3
	ScanSwapped = 1 << 4
)

// pagemapScan is PAGEMAP_SCAN: _IOWR('f', 16, struct pm_scan_arg).
const pagemapScan = 0xc0606610

// pmScanArg is struct pm_scan_arg.
type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages uint64
	inverted, mask, anyOf, returnMask                       uint64
}

// Region is a run of pages [Start, End) PAGEMAP_SCAN found.
type Region struct {
	Start, End, Categories uint64
}

// Scan asks the kernel for the runs of pages in [start, end) whose
// categories, after inverting the bits of inverted, have every bit of mask
// and (if anyOf is not 0) one of anyOf (PAGEMAP_SCAN, Linux 6.7): one call
// for what reading every page's entry would take a page table walk and a
// loop over each. Consecutive pages found come back as one region. It
// fills regions (at most cap(regions)) and returns them with the address
// the walk reached, from which a full regions must be continued. Kernels
// without it answer ENOTTY.
func (p *Pagemap) Scan(start, end, inverted, mask, anyOf uint64, regions []Region) ([]Region, uint64, error) {
	regions = regions[:cap(regions)]
	arg := pmScanArg{
		size: uint64(unsafe.Sizeof(pmScanArg{})), start: start, end: end,
		vec: uint64(uintptr(unsafe.Pointer(&regions[0]))), vecLen: uint64(len(regions)),
		inverted: inverted, mask: mask, anyOf: anyOf, returnMask: mask | anyOf,
	}
	n, _, e := unix.Syscall(unix.SYS_IOCTL, p.f.Fd(), pagemapScan, uintptr(unsafe.Pointer(&arg)))
	runtime.KeepAlive(regions)
	if e != 0 {
		return nil, start, e
	}
	return regions[:n], arg.walkEnd, nil
}
