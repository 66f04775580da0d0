package fs

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// capture is one taking of a directory's snapshot: the tree frozen and its
// image laid out (checkpoint.Lay), which may take seconds (a task that
// will not stop is waited for). It runs in a goroutine of its own, with a
// context of its own, and every request that wants the directory's
// snapshot meanwhile waits for this one (single flight) without holding
// any lock. Each waiter gives up when its own request is interrupted; when
// all have, the capture is cancelled (Lay thaws what it stopped), and a
// layout finished nonetheless is closed at once, so that the tree runs on.
type capture struct {
	done   chan struct{} // closed once it ended: snap or err is set
	cancel context.CancelFunc
	owner  *checkpoint.Access // whose rights the tree was frozen with

	// Guarded by the snapshotter's mu:
	waiters   int  // requests waiting for it
	cancelled bool // every waiter left, and take was told to give up
	finished  bool // done is closed
	snap      *snapshot
	err       error
}

// errAbandoned: every request waiting for a capture was interrupted.
var errAbandoned = errors.New("snapshot abandoned: every request for it was interrupted")

// start begins a capture with the rights of access. Called with mu held.
func (s *snapshotter) start(access *checkpoint.Access) *capture {
	ctx, cancel := context.WithCancel(context.Background())
	c := &capture{done: make(chan struct{}), cancel: cancel, owner: access}
	s.flight = c
	s.rec.freezing(time.Now())
	opt := checkpoint.Options{Mode: s.cfg.Mode, Allow: access.Allow, ReplaceExternal: s.cfg.ReplaceExternal,
		CopyLimit: max(s.cfg.CopyLimit, 0), Hold: s.cfg.Hold, Logf: s.cfg.Logger.Printf}
	go s.run(ctx, c, opt)
	return c
}

// run takes the snapshot and hands it to the requests still waiting, with
// a pin for each so that nothing retires it before they have it.
func (s *snapshotter) run(ctx context.Context, c *capture, opt checkpoint.Options) {
	lay, err := s.take(ctx, s.pid, opt)
	laid := time.Now()
	c.cancel()
	var orphan layout
	s.mu.Lock()
	s.flight = nil
	switch {
	case err != nil:
		c.err = err
		if c.cancelled {
			// Its readers got EINTR, whatever the capture made of
			// being told to give up.
			s.cfg.Logger.Printf("snapshot of %d abandoned: %v", s.pid, err)
			s.rec.captureFailed(err, syscall.EINTR, laid)
		} else {
			s.rec.captureFailed(err, errno(err), laid)
		}
	case c.waiters == 0:
		orphan, c.err = lay, errAbandoned
		s.rec.captureFailed(errAbandoned, syscall.EINTR, laid)
	default:
		c.snap = s.install(lay, laid, c.waiters)
	}
	c.finished = true
	close(c.done)
	s.mu.Unlock()
	if orphan != nil {
		s.cfg.Logger.Printf("snapshot of %d: %v; letting its tree run", s.pid, errAbandoned)
		orphan.Close()
	}
}

// abandon takes an interrupted request off c's waiters, cancelling c if
// it was the last. It reports false if c finished meanwhile: the request
// then takes what it made, which costs no wait.
func (s *snapshotter) abandon(c *capture) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.finished {
		return false
	}
	c.waiters--
	if c.waiters == 0 {
		c.cancelled = true
		c.cancel()
	}
	return true
}

// await waits for c on behalf of one request of get; again says the
// request should start over (c failed for its owner's rights only).
func (s *snapshotter) await(ctx context.Context, c *capture, access *checkpoint.Access, hold, image bool) (_ *snapshot, _ error, again bool) {
	select {
	case <-c.done:
	case <-ctx.Done():
		if s.abandon(c) {
			return nil, errInterrupted, false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.err != nil {
		// A tree refused to the owner (no right to ptrace a task, or
		// the owner's own process in it) may be another's to take.
		if access != c.owner && callerBound(c.err) {
			return nil, nil, true
		}
		return nil, c.err, false
	}
	snap := c.snap
	snap.refs-- // the pin run kept for this request
	if access != c.owner {
		if err := check(access, snap.res); err != nil {
			snap.dropIfUnused()
			s.expireLater()
			return nil, err, false
		}
	}
	s.pin(snap, hold, image)
	return snap, nil, false
}

// callerBound reports whether a capture failed because of whose request
// started it.
func callerBound(err error) bool {
	return errors.Is(err, checkpoint.ErrAccess) || errors.Is(err, checkpoint.ErrSelf)
}
