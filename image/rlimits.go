package image

import "fmt"

// RecRLimits is the per-process record of its resource limits (the kernel
// keeps them in the signal struct, which a process's threads share). It
// follows the PROCESS record.
const RecRLimits = 106

// NumRLimits is RLIM_NLIMITS: the resources the kernel limits, numbered
// RLIMIT_CPU (0) to RLIMIT_RTTIME (15).
const NumRLimits = 16

// RLimInfinity is RLIM_INFINITY: no limit.
const RLimInfinity = ^uint64(0)

// RLimit is one resource limit as setrlimit takes it: the soft limit the
// kernel enforces and the hard limit the soft one may be raised to.
type RLimit struct {
	Cur, Max uint64
}

var rlimitNames = [NumRLimits]string{"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
	"RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
	"RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME"}

// RLimitName names resource res as <sys/resource.h> does.
func RLimitName(res int) string {
	if res >= 0 && res < NumRLimits {
		return rlimitNames[res]
	}
	return fmt.Sprintf("resource %d", res)
}

// RLIMITS payload: nr_limits (u32, at most NumRLimits), then for resource
// 0, 1, ... nr_limits-1 its soft and hard limit (u64 each; RLimInfinity is
// unlimited). A checkpoint records every resource; a resource beyond
// nr_limits is left as the restored process inherits it.
func appendRLimits(b []byte, l []RLimit) []byte {
	b = le.AppendUint32(b, uint32(len(l)))
	for _, r := range l {
		b = le.AppendUint64(b, r.Cur)
		b = le.AppendUint64(b, r.Max)
	}
	return b
}

func decodeRLimits(h recHeader, payload []byte) ([]RLimit, error) {
	d := newDecoder(h, payload)
	n := d.count("nr_limits", NumRLimits, 16)
	l := make([]RLimit, n)
	for i := range l {
		off := d.off()
		l[i] = RLimit{Cur: d.u64("soft limit"), Max: d.u64("hard limit")}
		if d.err == nil && l[i].Cur > l[i].Max {
			d.failAt(off, ErrInvalid, "%s: soft limit %s above hard limit %s",
				RLimitName(i), FormatRLimit(l[i].Cur), FormatRLimit(l[i].Max))
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return l, nil
}

// FormatRLimit prints a limit value, "unlimited" for RLimInfinity.
func FormatRLimit(v uint64) string {
	if v == RLimInfinity {
		return "unlimited"
	}
	return fmt.Sprint(v)
}

// WriteRLimits writes the RLIMITS record of the current task, a process;
// l is indexed by resource and holds at most NumRLimits entries.
func (w *Writer) WriteRLimits(l []RLimit) error {
	return w.writeSmall(RecRLimits, appendRLimits(nil, l))
}

// ReadRLimits decodes the RLIMITS record rec that NextRecord returned.
func (r *Reader) ReadRLimits(rec Record) ([]RLimit, error) { return readSmall(r, rec, decodeRLimits) }
