package image

import "fmt"

// RecThreadAttr is the per-thread record of what the kernel keeps for each
// thread apart from its registers and signal state: its scheduling policy,
// real-time priority and nice value, and its parent-death signal.
const RecThreadAttr = 204

// Scheduling policies a THREADATTR record may hold (SCHED_* of
// <linux/sched.h>). SCHED_DEADLINE (6) and SCHED_EXT (7) are not among
// them: their parameters are not recorded.
const (
	SchedOther = 0
	SchedFIFO  = 1
	SchedRR    = 2
	SchedBatch = 3
	SchedIdle  = 5
)

// MaxRTPriority is the highest real-time priority (MAX_RT_PRIO-1).
const MaxRTPriority = 99

// ThreadAttr holds a thread's scheduling attributes and parent-death
// signal. Nice is the thread's own: the kernel keeps it per thread, and
// Process.Nice is its leader's.
type ThreadAttr struct {
	Policy      uint32 // SchedOther, SchedFIFO, SchedRR, SchedBatch or SchedIdle
	ResetOnFork bool   // SCHED_RESET_ON_FORK: children start at SCHED_OTHER, nice 0
	Priority    uint32 // 1 to MaxRTPriority under SchedFIFO and SchedRR, else 0
	Nice        int32  // -20 to 19
	PDeathSig   uint32 // PR_SET_PDEATHSIG: the signal sent when the parent exits, 0 for none
}

// PolicyName names a SCHED_* policy.
func PolicyName(p uint32) string {
	switch p {
	case SchedOther:
		return "SCHED_OTHER"
	case SchedFIFO:
		return "SCHED_FIFO"
	case SchedRR:
		return "SCHED_RR"
	case SchedBatch:
		return "SCHED_BATCH"
	case SchedIdle:
		return "SCHED_IDLE"
	case 6:
		return "SCHED_DEADLINE"
	case 7:
		return "SCHED_EXT"
	}
	return fmt.Sprintf("policy %d", p)
}

// THREADATTR payload: policy, flags (1 reset-on-fork), rt priority (u32
// each), nice (i32), parent-death signal (u32).
func appendThreadAttr(b []byte, a *ThreadAttr) []byte {
	b = le.AppendUint32(b, a.Policy)
	var flags uint32
	if a.ResetOnFork {
		flags |= 1
	}
	b = le.AppendUint32(b, flags)
	b = le.AppendUint32(b, a.Priority)
	b = le.AppendUint32(b, uint32(a.Nice))
	return le.AppendUint32(b, a.PDeathSig)
}

func decodeThreadAttr(h recHeader, payload []byte) (*ThreadAttr, error) {
	d := newDecoder(h, payload)
	a := &ThreadAttr{Policy: d.u32("policy")}
	flags := d.u32("flags")
	a.ResetOnFork = flags&1 != 0
	a.Priority, a.Nice, a.PDeathSig = d.u32("rt priority"), int32(d.u32("nice")), d.u32("parent-death signal")
	rt := a.Policy == SchedFIFO || a.Policy == SchedRR
	switch {
	case d.err != nil:
	case a.Policy != SchedOther && a.Policy != SchedBatch && a.Policy != SchedIdle && !rt:
		d.failAt(d.base, ErrInvalid, "%s cannot be restored", PolicyName(a.Policy))
	case flags&^1 != 0:
		d.failAt(d.base+4, ErrInvalid, "unknown flags %#x", flags&^1)
	case rt && (a.Priority < 1 || a.Priority > MaxRTPriority):
		d.failAt(d.base+8, ErrInvalid, "%s priority %d outside 1 to %d", PolicyName(a.Policy), a.Priority, MaxRTPriority)
	case !rt && a.Priority != 0:
		d.failAt(d.base+8, ErrInvalid, "%s priority %d, want 0", PolicyName(a.Policy), a.Priority)
	case a.Nice < -20 || a.Nice > 19:
		d.failAt(d.base+12, ErrInvalid, "nice %d outside -20 to 19", a.Nice)
	case a.PDeathSig > MaxSignals:
		d.failAt(d.base+16, ErrInvalid, "parent-death signal %d does not exist", a.PDeathSig)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return a, nil
}

// WriteThreadAttr writes the THREADATTR record of the current task.
func (w *Writer) WriteThreadAttr(a *ThreadAttr) error {
	return w.writeSmall(RecThreadAttr, appendThreadAttr(nil, a))
}

// ReadThreadAttr decodes the THREADATTR record rec that NextRecord returned.
func (r *Reader) ReadThreadAttr(rec Record) (*ThreadAttr, error) {
	return readSmall(r, rec, decodeThreadAttr)
}
