// Package cleanup keeps the undo steps of work done in several steps, in
// the manner of gVisor's pkg/cleanup: each step that changes the world
// pushes how to undo it; on success the stack is released and nothing is
// undone, on failure the steps are undone in reverse order. A freeze that
// stopped half a tree thaws exactly that half; a restore that built half a
// forest kills and reaps exactly that half.
package cleanup

import "errors"

// Stack is a stack of undo steps. The zero value is empty and ready.
type Stack struct {
	steps []func() error
}

// Add pushes an undo step.
func (s *Stack) Add(undo func() error) { s.steps = append(s.steps, undo) }

// AddFunc pushes an undo step that cannot fail.
func (s *Stack) AddFunc(undo func()) {
	s.Add(func() error { undo(); return nil })
}

// Release forgets every step: the work succeeded and stays done.
func (s *Stack) Release() { s.steps = nil }

// Undo runs every step, the last pushed first, and empties the stack. A
// step that fails does not stop the others; their errors are joined.
func (s *Stack) Undo() error {
	var errs []error
	for i := len(s.steps) - 1; i >= 0; i-- {
		if err := s.steps[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.steps = nil
	return errors.Join(errs...)
}

// Len is the number of steps waiting.
func (s *Stack) Len() int { return len(s.steps) }
