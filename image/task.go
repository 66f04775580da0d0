package image

import "strings"

// taskStates are the /proc state letters a TASK record may carry: the
// current ones (R S D T t X Z P I) and older kernels' (x K W).
const taskStates = "RSDTtXZPIxKW"

// TASK payload (record type 103), little-endian:
//
//	off  size  field
//	  0     4  pid tag (as in TREE; TASK records come in TREE order)
//	  4     1  state, a /proc state letter
//	  5     3  zero (keeps exit code aligned; must be zero)
//	  8     4  exit code (i32 wait status of a zombie)
//	 12     2  len(comm), at most MaxCommLen
//	 14     n  comm
func appendTask(b []byte, t *TaskState) []byte {
	start := len(b)
	b = appendRecord(b, RecTask)
	b = le.AppendUint32(b, uint32(t.Pid))
	b = append(b, t.State, 0, 0, 0)
	b = le.AppendUint32(b, uint32(t.ExitCode))
	comm := t.Comm
	if len(comm) > 0xffff {
		comm = comm[:0xffff] // refused by decodeTask; keeps the u16 honest
	}
	b = appendString(b, comm)
	finishRecord(b, start)
	return b
}

// decodeTask decodes and checks the TASK record of task index i, whose pid
// tag TREE says is want.
func decodeTask(h recHeader, payload []byte, i int, want Tag) (*TaskState, error) {
	dec := newDecoder(h, payload)
	d := &dec
	var t TaskState
	t.Pid = Tag(d.u32("pid"))
	if d.err == nil && t.Pid != want {
		d.failAt(d.base, ErrOrder, "task %d: pid tag %d, but TREE lists pid tag %d at this place", i, t.Pid, want)
	}
	off := d.off()
	t.State = d.u8("state")
	if d.err == nil && (t.State == 0 || !strings.ContainsRune(taskStates, rune(t.State))) {
		d.failAt(off, ErrInvalid, "task %d: state %q is not a /proc state letter (%s)", i, t.State, taskStates)
	}
	if pad := d.bytes(3, "padding"); pad != nil && (pad[0]|pad[1]|pad[2]) != 0 {
		d.failAt(off+1, ErrInvalid, "task %d: padding bytes % x are not zero", i, pad)
	}
	t.ExitCode = int32(d.u32("exit code"))
	off = d.off()
	if n := int(d.u16("comm length")); d.err == nil && n > MaxCommLen {
		d.failAt(off, ErrTooLarge, "task %d: comm is %d bytes, at most %d allowed", i, n, MaxCommLen)
	} else {
		t.Comm = string(d.bytes(n, "comm"))
	}
	if d.err == nil && strings.IndexByte(t.Comm, 0) >= 0 {
		d.failAt(off, ErrInvalid, "task %d: comm %q holds a NUL byte", i, t.Comm)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return &t, nil
}
