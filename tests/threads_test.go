package tests

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestRestoreThreadsCount: four threads count, each in thread-local storage
// and in a shared slot, checking their own tid at every step. Restored
// through the mount, every thread has its tid back (gettid, /proc) and goes
// on counting from where the image left it, not from zero.
func TestRestoreThreadsCount(t *testing.T) {
	requireEnv(t)
	m := testMount(t)
	report := filepath.Join(t.TempDir(), "report")
	w := startLogWorkload(t, exec.Command(buildWorkload(t, "threads"), report), report)
	tids := threads(w.pid)
	slices.Sort(tids)
	early := reportLines(t, report) // written before the checkpoint
	atLeast := counters(t, early[len(early)-1])
	before, after := w.cutAndRestore(t, m, "threads", 10)

	if got := threads(w.pid); !slices.Equal(sorted(got), tids) {
		t.Errorf("restored threads %v, were %v", got, tids)
	}
	wantTids := reportField(t, before[len(before)-1], "tids")
	for _, l := range after {
		if reportField(t, l, "tids") != wantTids || reportField(t, l, "check") != "ok" {
			t.Errorf("after restore: %q, want tids=%s check=ok", l, wantTids)
		}
	}
	first, last := counters(t, after[0]), counters(t, after[len(after)-1])
	for i := range first {
		if first[i] < atLeast[i] {
			t.Errorf("thread %d counts %d after restore, already %d before the checkpoint: it started afresh", i, first[i], atLeast[i])
		}
		if last[i] <= first[i] {
			t.Errorf("thread %d stopped counting after restore (%d, then %d)", i, first[i], last[i])
		}
	}
}

func counters(t *testing.T, line string) []int {
	t.Helper()
	var c []int
	for _, f := range strings.Split(reportField(t, line, "c"), ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("counters in %q: %v", line, err)
		}
		c = append(c, n)
	}
	return c
}

func sorted(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
