package inject

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/sys"
)

// BatchCode runs a table of system calls in one go, so that a task makes
// many calls for the price of one ptrace round trip. Each entry is eight
// words: number, six arguments, result; a number of -1 ends the table, and
// so does the first call that fails. The code then traps (int3). Source
// (x86-64, Intel syntax), r12 pointing at the table:
//
//	1:  mov rax, [r12]        ; number
//	    cmp rax, -1
//	    je 2f
//	    mov rdi, [r12+8]      ; arguments
//	    mov rsi, [r12+16]
//	    mov rdx, [r12+24]
//	    mov r10, [r12+32]
//	    mov r8, [r12+40]
//	    mov r9, [r12+48]
//	    syscall
//	    mov [r12+56], rax     ; result
//	    cmp rax, -4095        ; -errno?
//	    jae 2f
//	    add r12, 64
//	    jmp 1b
//	2:  int3
var BatchCode = []byte{
	0x49, 0x8b, 0x04, 0x24, 0x48, 0x83, 0xf8, 0xff, 0x74, 0x33, 0x49, 0x8b,
	0x7c, 0x24, 0x08, 0x49, 0x8b, 0x74, 0x24, 0x10, 0x49, 0x8b, 0x54, 0x24,
	0x18, 0x4d, 0x8b, 0x54, 0x24, 0x20, 0x4d, 0x8b, 0x44, 0x24, 0x28, 0x4d,
	0x8b, 0x4c, 0x24, 0x30, 0x0f, 0x05, 0x49, 0x89, 0x44, 0x24, 0x38, 0x48,
	0x3d, 0x01, 0xf0, 0xff, 0xff, 0x73, 0x06, 0x49, 0x83, 0xc4, 0x40, 0xeb,
	0xc3, 0xcc,
}

// Call is one system call of a batch.
type Call struct {
	Nr   uintptr
	Args [6]uint64
}

const entrySize = 64

// TableSize is the bytes a batch of n calls needs at its table address.
func TableSize(n int) int { return (n + 1) * entrySize }

// BatchCapacity is how many calls a table of size bytes holds (one entry
// ends the table).
func BatchCapacity(size int) int { return size/entrySize - 1 }

// Batch runs calls in the task through BatchCode, which must already be in
// its memory at code (executable); the table is written at table. It
// returns every call's result, or an error naming the first call that
// failed; the calls before it have taken effect.
func (t *Task) Batch(mem *os.File, code, table uint64, calls []Call) ([]uint64, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	le := binary.LittleEndian
	buf := make([]byte, TableSize(len(calls)))
	for i, c := range calls {
		e := buf[i*entrySize:]
		le.PutUint64(e, uint64(c.Nr))
		for j, a := range c.Args {
			le.PutUint64(e[8+8*j:], a)
		}
	}
	le.PutUint64(buf[len(calls)*entrySize:], ^uint64(0))
	if _, err := mem.WriteAt(buf, int64(table)); err != nil {
		return nil, fmt.Errorf("write syscall table: %w", err)
	}
	regs := t.Saved
	regs.Rip, regs.R12, regs.Orig_rax = code, table, ^uint64(0)
	if err := unix.PtraceSetRegs(t.Tid, &regs); err != nil {
		return nil, os.NewSyscallError("ptrace(SETREGS)", err)
	}
	if err := t.contToTrap(); err != nil {
		return nil, fmt.Errorf("pid %d: syscall batch: %w", t.Tid, err)
	}
	if _, err := mem.ReadAt(buf, int64(table)); err != nil {
		return nil, fmt.Errorf("read syscall table: %w", err)
	}
	results := make([]uint64, len(calls))
	for i := range calls {
		r := le.Uint64(buf[i*entrySize+56:])
		results[i] = r
		if v := int64(r); v < 0 && v > -4096 {
			return results, fmt.Errorf("pid %d: syscall %d (call %d of %d in a batch): %w",
				t.Tid, calls[i].Nr, i+1, len(calls), unix.Errno(-v))
		}
	}
	return results, nil
}

// contToTrap lets an unguarded task run the batch code until its int3.
// The int3's SIGTRAP is a signal-delivery-stop, a stop no guarded task is
// ever left in (see the package doc): batches are for the tasks of a
// restore, which the tracer's death kills. The next resume suppresses it.
func (t *Task) contToTrap() error {
	if t.g != nil {
		return fmt.Errorf("batches are not for guarded tasks")
	}
	atTrap := func(ws unix.WaitStatus) bool { return sys.Event(ws) == 0 && ws.StopSignal() == unix.SIGTRAP }
	hold := func(sig int) (int, error) { t.Pending = sig; return 0, nil }
	_, err := t.drive(unix.PtraceCont, kill, atTrap, hold)
	return err
}
