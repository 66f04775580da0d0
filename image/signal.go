package image

// Per-task record types of the signal subsystem.
const (
	RecSigHand  = 601 // one per process: the disposition of every signal not left at default
	RecSigState = 602 // one per thread: blocked mask and alternate stack
)

// MaxSignals caps the SIGHAND entries: signals are numbered 1 to 64.
const MaxSignals = 64

// SigAction is the disposition of one signal, as the kernel keeps it
// (struct kernel_sigaction): a handler address or SIG_IGN (1), flags, the
// restorer glibc returns through, and the mask blocked while it runs.
type SigAction struct {
	Signo    uint32
	Handler  uint64
	Flags    uint64
	Restorer uint64
	Mask     uint64
}

// SigState is the signal state of one thread.
type SigState struct {
	Blocked  uint64 // the blocked mask
	AltSP    uint64 // sigaltstack: base, flags, size
	AltFlags uint32
	AltSize  uint64
}

// SIGHAND payload: u32 count, then per entry u32 signo, u32 zero, handler,
// flags, restorer, mask (u64 each).
func appendSigHand(b []byte, acts []SigAction) []byte {
	b = le.AppendUint32(b, uint32(len(acts)))
	for _, a := range acts {
		b = le.AppendUint32(b, a.Signo)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint64(b, a.Handler)
		b = le.AppendUint64(b, a.Flags)
		b = le.AppendUint64(b, a.Restorer)
		b = le.AppendUint64(b, a.Mask)
	}
	return b
}

func decodeSigHand(h recHeader, payload []byte) ([]SigAction, error) {
	d := newDecoder(h, payload)
	n := d.count("nr_sigactions", MaxSignals, 40)
	acts := make([]SigAction, n)
	seen := uint64(0)
	for i := range acts {
		off := d.off()
		a := &acts[i]
		a.Signo = d.u32("signo")
		if d.u32("padding") != 0 {
			d.failAt(off, ErrInvalid, "sigaction %d: non-zero padding", i)
		}
		a.Handler, a.Flags, a.Restorer, a.Mask = d.u64("handler"), d.u64("flags"), d.u64("restorer"), d.u64("mask")
		switch {
		case d.err != nil:
		case a.Signo < 1 || a.Signo > MaxSignals || a.Signo == 9 || a.Signo == 19:
			d.failAt(off, ErrInvalid, "sigaction %d: signal %d cannot be caught or does not exist", i, a.Signo)
		case seen&(1<<(a.Signo-1)) != 0:
			d.failAt(off, ErrDuplicate, "sigaction %d: signal %d given twice", i, a.Signo)
		}
		seen |= 1 << (a.Signo - 1)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return acts, nil
}

// SIGSTATE payload: blocked u64, alt sp u64, alt flags u32, u32 zero, alt
// size u64.
func appendSigState(b []byte, s *SigState) []byte {
	b = le.AppendUint64(b, s.Blocked)
	b = le.AppendUint64(b, s.AltSP)
	b = le.AppendUint32(b, s.AltFlags)
	b = le.AppendUint32(b, 0)
	return le.AppendUint64(b, s.AltSize)
}

func decodeSigState(h recHeader, payload []byte) (*SigState, error) {
	d := newDecoder(h, payload)
	s := &SigState{Blocked: d.u64("blocked"), AltSP: d.u64("altstack sp"), AltFlags: d.u32("altstack flags")}
	d.u32("padding")
	s.AltSize = d.u64("altstack size")
	if err := d.end(); err != nil {
		return nil, err
	}
	return s, nil
}

// WriteSigHand writes the SIGHAND record of the current task.
func (w *Writer) WriteSigHand(acts []SigAction) error {
	return w.writeSmall(RecSigHand, appendSigHand(nil, acts))
}

// WriteSigState writes the SIGSTATE record of the current task.
func (w *Writer) WriteSigState(s *SigState) error {
	return w.writeSmall(RecSigState, appendSigState(nil, s))
}

// ReadSigHand decodes the SIGHAND record rec that NextRecord returned.
func (r *Reader) ReadSigHand(rec Record) ([]SigAction, error) {
	return readSmall(r, rec, decodeSigHand)
}

// ReadSigState decodes the SIGSTATE record rec that NextRecord returned.
func (r *Reader) ReadSigState(rec Record) (*SigState, error) {
	return readSmall(r, rec, decodeSigState)
}

// RecITimers is the per-process record of its interval timers.
const RecITimers = 603

// ITimer is one interval timer (ITIMER_REAL, _VIRTUAL, _PROF): what is
// left of its current period and its interval, in microseconds.
type ITimer struct {
	Value, Interval uint64
}

// ITIMERS payload: for real, virtual and prof in that order, value and
// interval in microseconds (u64 each).
func appendITimers(b []byte, t *[3]ITimer) []byte {
	for _, it := range t {
		b = le.AppendUint64(b, it.Value)
		b = le.AppendUint64(b, it.Interval)
	}
	return b
}

func decodeITimers(h recHeader, payload []byte) (*[3]ITimer, error) {
	d := newDecoder(h, payload)
	var t [3]ITimer
	for i := range t {
		t[i].Value, t[i].Interval = d.u64("timer value"), d.u64("timer interval")
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return &t, nil
}

// WriteITimers writes the ITIMERS record of the current task.
func (w *Writer) WriteITimers(t *[3]ITimer) error {
	return w.writeSmall(RecITimers, appendITimers(nil, t))
}

// ReadITimers decodes the ITIMERS record rec that NextRecord returned.
func (r *Reader) ReadITimers(rec Record) (*[3]ITimer, error) { return readSmall(r, rec, decodeITimers) }

// RecSigPending is the per-task record of signals queued at the checkpoint:
// the thread's own queue and, in its leader's record, the process's shared
// one.
const RecSigPending = 604

// MaxPending caps the queued signals of one record.
const MaxPending = 1 << 16

// PendingSignal is one queued signal: its siginfo as the kernel gives it,
// and whether it is queued to the whole process.
type PendingSignal struct {
	Shared bool
	Info   [128]byte // siginfo_t; si_signo is its first int
}

// SIGPENDING payload: u32 count, then per signal u32 shared, u32 zero,
// 128 bytes of siginfo.
func appendSigPending(b []byte, ps []PendingSignal) []byte {
	b = le.AppendUint32(b, uint32(len(ps)))
	for _, p := range ps {
		shared := uint32(0)
		if p.Shared {
			shared = 1
		}
		b = le.AppendUint32(b, shared)
		b = le.AppendUint32(b, 0)
		b = append(b, p.Info[:]...)
	}
	return b
}

func decodeSigPending(h recHeader, payload []byte) ([]PendingSignal, error) {
	d := newDecoder(h, payload)
	n := d.count("nr_pending", MaxPending, 136)
	ps := make([]PendingSignal, n)
	for i := range ps {
		off := d.off()
		shared := d.u32("shared")
		d.u32("padding")
		copy(ps[i].Info[:], d.bytes(128, "siginfo"))
		ps[i].Shared = shared == 1
		if sig := le.Uint32(ps[i].Info[:]); d.err == nil && (shared > 1 || sig < 1 || sig > MaxSignals) {
			d.failAt(off, ErrInvalid, "pending signal %d: signal %d, shared %d", i, sig, shared)
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return ps, nil
}

// WriteSigPending writes the SIGPENDING record of the current task.
func (w *Writer) WriteSigPending(ps []PendingSignal) error {
	return w.writeSmall(RecSigPending, appendSigPending(nil, ps))
}

// ReadSigPending decodes the SIGPENDING record rec that NextRecord returned.
func (r *Reader) ReadSigPending(rec Record) ([]PendingSignal, error) {
	return readSmall(r, rec, decodeSigPending)
}
