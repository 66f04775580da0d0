package image

// RecThread is the per-thread record of the addresses the kernel keeps for
// thread libraries: clear_child_tid (set_tid_address: cleared and woken
// when the thread exits, which pthread_join waits for) and the robust
// futex list.
const RecThread = 203

// Thread holds those addresses.
type Thread struct {
	ClearChildTid uint64
	RobustList    uint64
	RobustLen     uint64
}

// THREAD payload: clear_child_tid, robust list head, robust list length
// (u64 each).
func appendThread(b []byte, t *Thread) []byte {
	b = le.AppendUint64(b, t.ClearChildTid)
	b = le.AppendUint64(b, t.RobustList)
	return le.AppendUint64(b, t.RobustLen)
}

func decodeThread(h recHeader, payload []byte) (*Thread, error) {
	d := newDecoder(h, payload)
	t := &Thread{ClearChildTid: d.u64("clear_child_tid"), RobustList: d.u64("robust list"), RobustLen: d.u64("robust list length")}
	if d.err == nil && t.RobustList != 0 && t.RobustLen != 24 {
		d.fail(ErrInvalid, "robust list head of %d bytes, the kernel knows only 24", t.RobustLen)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return t, nil
}

// WriteThread writes the THREAD record of the current task.
func (w *Writer) WriteThread(t *Thread) error { return w.writeSmall(RecThread, appendThread(nil, t)) }

// ReadThread decodes the THREAD record rec that NextRecord returned.
func (r *Reader) ReadThread(rec Record) (*Thread, error) { return readSmall(r, rec, decodeThread) }
