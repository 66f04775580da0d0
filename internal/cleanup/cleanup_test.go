package cleanup

import (
	"errors"
	"reflect"
	"testing"
)

func TestUndoRunsInReverseAndJoinsErrors(t *testing.T) {
	var s Stack
	var order []int
	errTwo := errors.New("two failed")
	s.AddFunc(func() { order = append(order, 1) })
	s.Add(func() error { order = append(order, 2); return errTwo })
	s.AddFunc(func() { order = append(order, 3) })
	err := s.Undo()
	if want := []int{3, 2, 1}; !reflect.DeepEqual(order, want) {
		t.Errorf("undo order %v, want %v", order, want)
	}
	if !errors.Is(err, errTwo) {
		t.Errorf("Undo = %v, want it to carry %v", err, errTwo)
	}
	if s.Len() != 0 {
		t.Errorf("%d steps left after Undo", s.Len())
	}
}

func TestReleaseForgets(t *testing.T) {
	var s Stack
	ran := false
	s.AddFunc(func() { ran = true })
	s.Release()
	if err := s.Undo(); err != nil || ran {
		t.Errorf("after Release, Undo ran a step (%v, %v)", ran, err)
	}
}
