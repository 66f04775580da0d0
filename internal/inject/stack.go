package inject

// StackArea is memory borrowed from a stopped thread's stack, to pass an
// injected call its in-memory arguments or to take its answers: below the
// red zone at the thread's stack pointer, where a signal frame could land
// as well, so nothing of the thread's own lives there. Release puts the
// bytes back.
type StackArea struct {
	Tid   int
	Addr  uint64
	saved []byte
}

// BorrowStack borrows size bytes below the stack pointer rsp of tid.
func BorrowStack(tid int, rsp uint64, size int) (*StackArea, error) {
	s := &StackArea{Tid: tid, Addr: (rsp - 512 - uint64(size)) &^ 15, saved: make([]byte, size)}
	if err := ReadMem(tid, s.Addr, s.saved); err != nil {
		return nil, err
	}
	return s, nil
}

// Read reads the first n bytes of the area.
func (s *StackArea) Read(n int) ([]byte, error) {
	b := make([]byte, n)
	return b, ReadMem(s.Tid, s.Addr, b)
}

// Write writes b at the start of the area.
func (s *StackArea) Write(b []byte) error { return WriteMem(s.Tid, s.Addr, b) }

// Release gives the borrowed bytes back.
func (s *StackArea) Release() error { return WriteMem(s.Tid, s.Addr, s.saved) }

// WithStackArg passes arg to call in memory borrowed from tid's stack at
// rsp, and gives that memory back afterwards.
func WithStackArg(tid int, rsp uint64, arg []byte, call func(addr uint64) error) error {
	s, err := BorrowStack(tid, rsp, len(arg))
	if err != nil {
		return err
	}
	if err := s.Write(arg); err != nil {
		s.Release()
		return err
	}
	err = call(s.Addr)
	if rerr := s.Release(); err == nil {
		err = rerr
	}
	return err
}
