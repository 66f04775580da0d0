// Package ptrace drives traced tasks. The kernel binds a tracee to the
// thread that attached it, so every request of one Tracer runs on one
// goroutine locked to its OS thread (gVisor's ptrace platform does the
// same). That thread is never unlocked: when the Tracer closes, or the
// daemon crashes, the thread dies and the kernel detaches and resumes every
// tracee it still held, so ckptfs can never leave a tree frozen.
package ptrace

import (
	"errors"
	"runtime"
	"sync/atomic"
)

// The main thread must never be a tracer's: the kernel does not let the
// main thread of a process exit, so a tracer goroutine that ran on it
// would be parked for ever when it ends instead of taking its tracees
// along. A program that traces keeps the main thread for its main
// goroutine by calling ReserveMainThread first thing; NewTracer refuses
// to start without it, so a program that forgot fails at once rather than
// sometimes.
var mainReserved atomic.Bool

// ReserveMainThread locks the calling goroutine, which must be the main
// goroutine (call it at the start of main or TestMain), to the main thread
// for good, which keeps every tracer off it.
func ReserveMainThread() {
	runtime.LockOSThread()
	mainReserved.Store(true)
}

// ErrClosed is returned for requests made after Close.
var ErrClosed = errors.New("ptrace: tracer closed")

// Tracer runs ptrace requests on its own locked OS thread.
type Tracer struct {
	reqs chan func()
	done chan struct{}
}

// NewTracer starts the tracer's thread. ReserveMainThread must have been
// called.
func NewTracer() *Tracer {
	if !mainReserved.Load() {
		panic("ptrace: NewTracer before ReserveMainThread: a tracer could take the main thread, which never exits")
	}
	t := &Tracer{reqs: make(chan func()), done: make(chan struct{})}
	go t.loop()
	return t
}

func (t *Tracer) loop() {
	// Never unlocked: the thread exits with the goroutine (see package doc).
	runtime.LockOSThread()
	defer close(t.done)
	for f := range t.reqs {
		f()
	}
}

// Do runs f on the tracer's thread and returns its error.
func (t *Tracer) Do(f func() error) error {
	errc := make(chan error, 1)
	select {
	case <-t.done:
		return ErrClosed
	case t.reqs <- func() { errc <- f() }:
	}
	return <-errc
}

// Close ends the tracer's thread; the kernel detaches what it still traces.
func (t *Tracer) Close() {
	select {
	case <-t.done:
	default:
		close(t.reqs)
		<-t.done
	}
}
