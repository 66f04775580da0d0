package image

// RecProcess is the per-process record of its place in the file system and
// the scheduler, and of its process-wide attributes.
const RecProcess = 104

// Process holds what a process keeps beside its memory and files.
type Process struct {
	Cwd, Root   string
	Umask       uint32
	Personality uint32
	Nice        int32 // the leader's; every thread's own is in its THREADATTR record
	OOMScoreAdj int32
	NoNewPrivs  bool
	Subreaper   bool
}

// PROCESS payload: umask, personality (u32), nice, oom_score_adj (i32),
// flags u32 (1 no_new_privs, 2 child subreaper), u16 length + cwd, u16
// length + root.
func appendProcess(b []byte, p *Process) []byte {
	b = le.AppendUint32(b, p.Umask)
	b = le.AppendUint32(b, p.Personality)
	b = le.AppendUint32(b, uint32(p.Nice))
	b = le.AppendUint32(b, uint32(p.OOMScoreAdj))
	var flags uint32
	if p.NoNewPrivs {
		flags |= 1
	}
	if p.Subreaper {
		flags |= 2
	}
	b = le.AppendUint32(b, flags)
	b = appendString(b, p.Cwd)
	return appendString(b, p.Root)
}

func decodeProcess(h recHeader, payload []byte) (*Process, error) {
	d := newDecoder(h, payload)
	p := &Process{Umask: d.u32("umask"), Personality: d.u32("personality"),
		Nice: int32(d.u32("nice")), OOMScoreAdj: int32(d.u32("oom_score_adj"))}
	flags := d.u32("flags")
	p.NoNewPrivs, p.Subreaper = flags&1 != 0, flags&2 != 0
	p.Cwd = d.str("cwd", MaxPathLen)
	p.Root = d.str("root", MaxPathLen)
	switch {
	case d.err != nil:
	case flags&^3 != 0 || p.Umask > 0o777 || p.Nice < -20 || p.Nice > 19 || p.OOMScoreAdj < -1000 || p.OOMScoreAdj > 1000:
		d.fail(ErrInvalid, "process attributes out of range (umask %#o, nice %d, oom_score_adj %d, flags %#x)",
			p.Umask, p.Nice, p.OOMScoreAdj, flags)
	case len(p.Cwd) == 0 || p.Cwd[0] != '/' || len(p.Root) == 0 || p.Root[0] != '/':
		d.fail(ErrInvalid, "cwd %q or root %q is not absolute", p.Cwd, p.Root)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return p, nil
}

// WriteProcess writes the PROCESS record of the current task.
func (w *Writer) WriteProcess(p *Process) error {
	return w.writeSmall(RecProcess, appendProcess(nil, p))
}

// ReadProcess decodes the PROCESS record rec that NextRecord returned.
func (r *Reader) ReadProcess(rec Record) (*Process, error) { return readSmall(r, rec, decodeProcess) }
