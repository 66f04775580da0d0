package inject

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/ckptfs/ckptfs/internal/procfs"
)

// A sigreturn gadget: `mov $15, %rax; syscall` or `mov $15, %eax;
// syscall`. Every program that installs a signal handler has one: it is
// the restorer that returns from handlers (glibc's and musl's __restore_rt,
// Go's runtime.sigreturn), and even a static C program links it.
var gadgets = [][]byte{
	{0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05},
	{0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05},
}

// Where a scratch area goes in the [stack] mapping: stackSlack above its
// bottom (room for a signal frame below the area), and only while the
// main thread's stack pointer is mainReserve above the area's top.
const (
	stackSlack  = 16 << 10
	mainReserve = 64 << 10
	belowArea   = 4 << 10 // room a fallback area leaves below it for a signal frame
)

// Space is what guarded calls need of one address space (a process's
// threads share it): where its code holds a sigreturn gadget, and where a
// scratch area may go.
type Space struct {
	Tgid   int
	gadget uint64 // the gadget's first instruction
	entry  uint64 // just after its syscall instruction
	stack  procfs.Mapping
	maps   []procfs.Mapping
	mainSP uint64 // the main thread's stack pointer, once known
}

// NewSpace finds the gadget and the stack of process tgid, which must be
// stopped.
func NewSpace(tgid int) (*Space, error) {
	maps, err := procfs.ReadMaps(tgid)
	if err != nil {
		return nil, err
	}
	s := &Space{Tgid: tgid, maps: maps}
	for _, m := range maps {
		if m.Path == "[stack]" {
			s.stack = m
		}
	}
	if err := s.findGadget(); err != nil {
		return nil, fmt.Errorf("pid %d: %w", tgid, err)
	}
	return s, nil
}

// fileKey names the file behind a mapping.
type fileKey struct {
	major, minor uint32
	inode        uint64
}

// gadgetCache remembers, per file, the file offset of a gadget in it (-1:
// none): libc's text is read once, not once per process. A cached offset
// is only a hint: the bytes are checked in each process before use.
var gadgetCache = struct {
	sync.Mutex
	at map[fileKey]int64
}{at: make(map[fileKey]int64)}

func (s *Space) findGadget() error {
	var scan []procfs.Mapping
	for _, m := range s.maps {
		if len(m.Perms) < 3 || m.Perms[2] != 'x' || m.Inode == 0 {
			continue // only file-backed code: anonymous code may change
		}
		k := fileKey{m.Major, m.Minor, m.Inode}
		gadgetCache.Lock()
		off, known := gadgetCache.at[k]
		gadgetCache.Unlock()
		if !known {
			scan = append(scan, m)
			continue
		}
		if off >= 0 && uint64(off) >= m.Offset && uint64(off) < m.Offset+(m.End-m.Start) {
			if s.useGadget(m.Start + uint64(off) - m.Offset) {
				return nil
			}
		}
	}
	for _, m := range scan {
		code := make([]byte, m.End-m.Start)
		if err := ReadMem(s.Tgid, m.Start, code); err != nil {
			continue // unreadable code cannot serve
		}
		found := int64(-1)
		for _, g := range gadgets {
			if i := bytes.Index(code, g); i >= 0 {
				found = int64(m.Offset) + int64(i)
				break
			}
		}
		gadgetCache.Lock()
		gadgetCache.at[fileKey{m.Major, m.Minor, m.Inode}] = found
		gadgetCache.Unlock()
		if found >= 0 && s.useGadget(m.Start+uint64(found)-m.Offset) {
			return nil
		}
	}
	return fmt.Errorf("no sigreturn gadget (mov $15, %%eax; syscall) in the process's code: its calls cannot be guarded")
}

// useGadget takes the gadget at addr if the process's memory holds one
// there.
func (s *Space) useGadget(addr uint64) bool {
	buf := make([]byte, len(gadgets[0]))
	if ReadMem(s.Tgid, addr, buf) != nil {
		return false
	}
	for _, g := range gadgets {
		if bytes.HasPrefix(buf, g) {
			s.gadget, s.entry = addr, addr+uint64(len(g))
			return true
		}
	}
	return false
}

// area returns where a thread with stack pointer sp has its scratch area of
// size bytes. Best is the bottom of the [stack] mapping, far below where
// the main thread's stack reaches: memory no thread uses, whatever its
// language (a Go goroutine's stack, say, has no room to spare below its
// pointer). Otherwise the area goes below the thread's red zone, where the
// kernel would put the frame of a signal delivered now.
func (s *Space) area(sp uint64, size int) (uint64, error) {
	st := s.stack
	base := st.Start + stackSlack
	if st.End != 0 && s.mainSP >= base+uint64(size)+mainReserve && s.mainSP < st.End && (sp < st.Start || sp >= base+uint64(size)) {
		return base, nil
	}
	base = (sp - redZone - uint64(size)) &^ 63
	for _, m := range s.maps {
		if m.Start <= base-belowArea && sp <= m.End && len(m.Perms) > 1 && m.Perms[1] == 'w' {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no writable memory for a %d-byte scratch area below the stack pointer %#x", size, sp)
}
