package tests

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Reader phases of a stress round, as the daemon is killed.
const (
	phaseOpening     = iota // open() of the image not returned: freeze, capture, layout
	phaseReading            // open, reading
	phaseReadThrough        // read to its end, still open
	phaseClosed             // read through and closed: the snapshot in its grace period
)

// stressReader reads the sentinel's image in the test process and tells
// how far it got.
type stressReader struct {
	phase atomic.Int32
	bytes atomic.Int64
	size  atomic.Int64
	done  chan error
	// openTook is how long the open took (the snapshot: freeze, capture,
	// layout); set once done is sent.
	openTook time.Duration
}

func startStressReader(path string) *stressReader {
	r := &stressReader{done: make(chan error, 1)}
	go func() {
		start := time.Now()
		f, err := os.Open(path)
		r.openTook = time.Since(start)
		if err != nil {
			r.done <- err
			return
		}
		if fi, err := f.Stat(); err == nil {
			r.size.Store(fi.Size())
		}
		r.phase.Store(phaseReading)
		buf := make([]byte, 256<<10)
		for {
			n, err := f.Read(buf)
			r.bytes.Add(int64(n))
			if err != nil {
				if errors.Is(err, io.EOF) {
					r.phase.Store(phaseReadThrough)
					err = f.Close()
					r.phase.Store(phaseClosed)
					r.done <- err
					return
				}
				f.Close()
				r.done <- err
				return
			}
		}
	}()
	return r
}

// landing names where in the checkpoint the kill landed.
func (r *stressReader) landing() string {
	switch r.phase.Load() {
	case phaseOpening:
		return "a: open pending (freeze, capture, layout)"
	case phaseReadThrough:
		return "f: read through, image still open"
	case phaseClosed:
		return "g: read through and closed (grace period)"
	}
	n, size := r.bytes.Load(), r.size.Load()
	switch {
	case n == 0:
		return "b: open, nothing read"
	case n*10 < size:
		return "c: read < 10%"
	case n*2 < size:
		return "d: read 10-50%"
	default:
		return "e: read 50-100%"
	}
}

// TestStressDaemonKill kills the daemon at random instants, again and
// again, while it checkpoints the sentinel and, every other round, restores
// an image: each round the sentinel must be unharmed and the restore
// either done (the forest whole and running) or gone without a trace. It
// runs only with CKPTFS_STRESS=N (N rounds; `make stress` runs 60);
// CKPTFS_STRESS_SEED replays a run's random delays.
func TestStressDaemonKill(t *testing.T) {
	requireEnv(t)
	rounds, _ := strconv.Atoi(os.Getenv("CKPTFS_STRESS"))
	if rounds <= 0 {
		t.Skip("set CKPTFS_STRESS=N (make stress: 60) to kill the daemon at N random instants")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CKPTFS_STRESS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("CKPTFS_STRESS_SEED=%q: %v", v, err)
		}
	}
	t.Logf("%d rounds, CKPTFS_STRESS_SEED=%d", rounds, seed)
	rng := rand.New(rand.NewPCG(seed, 0x636b70746673))

	img, procs := prepareRestoreImage(t)
	s := startSentinel(t)

	// How long a checkpoint (open, then read through) and a restore take:
	// the random kills are spread over that.
	var tOpen, tRead, tRestore time.Duration
	t.Run("calibrate", func(t *testing.T) {
		before := ourChildren()
		m := testMountWith(t, nil, crashArgs()...)
		start := time.Now()
		r := startStressReader(m.path(s.pid, "image"))
		select {
		case err := <-r.done:
			if err != nil || r.phase.Load() != phaseClosed {
				t.Fatalf("calibration checkpoint: %v", err)
			}
		case <-time.After(cmdTimeout):
			t.Fatalf("calibration checkpoint took longer than %v", cmdTimeout)
		}
		tRead, tOpen = time.Since(start), r.openTook
		s.assertUnharmed(t, "after the calibration checkpoint")
		start = time.Now()
		if rr := run(t, cmdTimeout, nil, "cp", img, m.path("restore", "cal")); rr.code != 0 {
			t.Fatalf("calibration restore: %s", rr)
		}
		tRestore = time.Since(start)
		m.kill(t)
		clearRestore(t, procs, before, m.pid)
	})
	if t.Failed() {
		return
	}
	const graceSpan = 300 * time.Millisecond
	t.Logf("a checkpoint takes %v (its open %v), a restore %v: 40%% of the kills land in the open, 40%% in the reading, 20%% in the %v after it",
		tRead.Round(time.Millisecond), tOpen.Round(time.Millisecond), tRestore.Round(time.Millisecond), graceSpan)
	randDur := func(d time.Duration) time.Duration { return time.Duration(rng.Int64N(int64(max(d, 1)))) }

	landings := map[string]int{}
	restores := map[string]int{}
	var atKill []int64 // bytes read when the daemon was killed
	done := 0
	for round := range rounds {
		var delay time.Duration
		switch pick := rng.Float64(); {
		case pick < 0.4:
			delay = randDur(tOpen)
		case pick < 0.8:
			delay = tOpen + randDur(tRead-tOpen)
		default:
			delay = tRead + randDur(graceSpan)
		}
		restore := round%2 == 1
		lead := randDur(4 * tRestore)
		ok := t.Run(fmt.Sprintf("round-%02d", round), func(t *testing.T) {
			before := ourChildren()
			m := testMountWith(t, nil, crashArgs()...)
			start := time.Now()
			r := startStressReader(m.path(s.pid, "image"))
			var cp chan result
			if restore {
				cp = make(chan result, 1)
				go func() {
					time.Sleep(max(0, delay-lead))
					cp <- run(t, cmdTimeout, nil, "cp", img, m.path("restore", "x"))
				}()
			}
			time.Sleep(time.Until(start.Add(delay)))
			landing, n := r.landing(), r.bytes.Load()
			if r.phase.Load() == phaseOpening {
				landing += fmt.Sprintf(", %d of %d tasks stopped", len(stoppedTasks(s.tasks)), len(s.tasks))
			}
			m.kill(t)
			select {
			case err := <-r.done:
				if err != nil && r.phase.Load() != phaseClosed {
					t.Logf("the reader after the kill: %v", err)
				}
			case <-time.After(cmdTimeout):
				t.Fatalf("the reader is stuck %v after the daemon's death", cmdTimeout)
			}
			landings[landing]++
			atKill = append(atKill, n)
			t.Logf("killed after %v: %s, %d bytes read", delay.Round(time.Microsecond), landing, n)
			reapLostCopies(t, s)
			s.assertUnharmed(t, fmt.Sprintf("round %d, daemon killed at %s", round, landing))
			if !restore {
				return
			}
			rr := <-cp
			if rr.timedOut {
				t.Fatalf("cp into restore/ hung after the daemon's death")
			}
			what := stressRestoreOutcome(t, rr, procs, before, m.pid)
			restores[what]++
			t.Logf("restore started %v before the kill: %s (cp: exit %d after %v)", min(lead, delay).Round(time.Microsecond), what, rr.code, rr.elapsed.Round(time.Microsecond))
			clearRestore(t, procs, before, m.pid)
		})
		if !ok {
			t.Errorf("stopping after round %d failed", round)
			break
		}
		done++
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d rounds; where the kill landed in the checkpoint:\n", done, rounds)
	for _, k := range slices.Sorted(maps.Keys(landings)) {
		fmt.Fprintf(&b, "\t%-45s %d\n", k, landings[k])
	}
	fmt.Fprintf(&b, "the restores (every other round):\n")
	for _, k := range slices.Sorted(maps.Keys(restores)) {
		fmt.Fprintf(&b, "\t%-45s %d\n", k, restores[k])
	}
	if len(atKill) > 0 {
		slices.Sort(atKill)
		fmt.Fprintf(&b, "bytes read at the kill: min %d, median %d, max %d", atKill[0], atKill[len(atKill)/2], atKill[len(atKill)-1])
	}
	t.Log(b.String())
	s.checkpointAgain(t)
}

// stressRestoreOutcome checks what a restore cut by the daemon's death
// left: a cp that succeeded made a forest that runs whole; a cp that
// failed left nothing at all, unless the restore was committed just before
// the kill (the reply lost), when the forest runs whole. Half a forest is
// a failure.
func stressRestoreOutcome(t *testing.T, r result, procs []imageProc, before map[int]bool, daemon int) string {
	t.Helper()
	if r.code == 0 {
		assertWholeRestored(t, "a restore cp finished before the kill", procs)
		return "done before the kill: forest runs"
	}
	deadline := time.Now().Add(reapTimeout)
	for {
		alive, left := aliveRestored(procs), strays(before, daemon)
		if len(alive) == 0 && len(left) == 0 {
			return "cut: nothing left"
		}
		if time.Now().After(deadline) {
			if len(alive) == len(procs) {
				// Not gone after the teardown's bound: committed.
				assertWholeRestored(t, "a restore cut after its commit", procs)
				return "cut after its commit: forest runs"
			}
			t.Errorf("a restore cut by the daemon's death (%s) left half a forest:\n\t%s\n\tleft to the test: %v",
				r, strings.Join(alive, "\n\t"), left)
			return "cut: HALF A FOREST"
		}
		time.Sleep(10 * time.Millisecond)
	}
}
