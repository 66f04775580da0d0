package fs

import (
	"context"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// layout is what a snapshot and its read-ahead use of a
// checkpoint.Layout: an image laid out over a frozen tree. It is an
// interface so that the fs package's tests can serve a fake one, without
// root, ptrace or a tree to freeze.
type layout interface {
	Result() *checkpoint.Result
	Size() int64
	ReadAt(p []byte, off int64) (int, error)
	PieceOf(p []byte, off int64) checkpoint.Piece
	Sum(pc checkpoint.Piece)
	Complete() bool
	Released() time.Time
	CopiedNow() int64
	Thaw()
	Close()
	Failed() <-chan struct{}
	Err() error
}

var _ layout = (*checkpoint.Layout)(nil)

// takeFunc freezes the subtree rooted at pid and lays its image out; ctx
// done before it returns makes it give up, leaving the tree running.
type takeFunc func(ctx context.Context, pid int, opt checkpoint.Options) (layout, error)

// lay is the real takeFunc. (A nil *checkpoint.Layout must not become a
// non-nil layout.)
func lay(ctx context.Context, pid int, opt checkpoint.Options) (layout, error) {
	l, err := checkpoint.Lay(ctx, pid, opt)
	if err != nil {
		return nil, err
	}
	return l, nil
}
