package tests

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

// BenchmarkFrozenTime measures, in one run (make bench), what the
// copy-on-write issue's targets are stated in: the longest stall a process
// of the tree observes itself (the stamp workload), for a 1 GiB process
// whose image is (a) read with cat into a file, (b) read by a reader
// throttled to 50 MB/s, (c) only stat'ed; and for a 4 GiB process read
// with cat; beside the fork of a 1 GiB process as the floor, the cold
// cat's rate against /proc/<pid>/mem's, the restore rate, and the daemon's
// memory while the tree writes a tenth of its memory during a slow read.
func BenchmarkFrozenTime(b *testing.B) {
	requireEnv(b)
	m := testMount(b)
	var rows [][3]string
	row := func(what, value, note string) { rows = append(rows, [3]string{what, value, note}) }
	gbps := func(bytes int64, d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e9 }
	dir := b.TempDir() // on the machine's disk (ext4 here), not tmpfs

	s := startStamp(b, 1024)
	fork := s.ask(b, syscall.SIGTTOU, "fork_us")
	row("fork of a 1 GiB process (the floor)", us(fork), "what one fork costs the process itself")

	// (a) cat into a file.
	img := filepath.Join(dir, "a.img")
	stall, took := s.stallDuring(b, func() { catTo(b, m.path(s.pid, "image"), img) })
	size := fileSize(b, img)
	procMem := procMemRate(b, s.pid)
	row("stall, 1 GiB, cat to an ext4 file", us(stall), fmt.Sprintf("target <= 100 ms; %.1fx the fork", float64(stall)/float64(fork)))
	row("cold cat of the 1 GiB image", fmt.Sprintf("%v, %.2f GB/s", took.Round(time.Millisecond), gbps(size, took)),
		fmt.Sprintf("%.0f%% of /proc/<pid>/mem (%.2f GB/s; target >= 80%%)", 100*gbps(size, took)/procMem, procMem))
	waitSnapshotEnd(b, m, s.pid)

	// (c) stat only.
	stall, _ = s.stallDuring(b, func() {
		if _, err := os.Stat(m.path(s.pid, "image")); err != nil {
			b.Fatal(err)
		}
		waitSnapshotEnd(b, m, s.pid)
	})
	row("stall, 1 GiB, stat of the image only", us(stall), "target <= 100 ms")

	// (b) a reader at 50 MB/s, the tree writing a tenth of its memory
	// meanwhile: the daemon's memory, and the pages duplicated.
	var rss, copied int64
	stall, _ = s.stallDuring(b, func() {
		f, err := os.Open(m.path(s.pid, "image"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			throttledRead(b, f, 50e6)
		}()
		time.Sleep(200 * time.Millisecond)
		s.ask(b, syscall.SIGTTIN, "wrote")
		for {
			select {
			case <-done:
				f.Close()
				waitSnapshotEnd(b, m, s.pid)
				return
			case <-time.After(100 * time.Millisecond):
			}
			rss = max(rss, residentSize(m.pid))
			copied = max(copied, copiesPrivate(s.pid))
		}
	})
	row("stall, 1 GiB, reader at 50 MB/s", us(stall), "target <= 100 ms")
	row("daemon RSS, tree writes 10% during that read", fmt.Sprintf("%d MiB", rss>>20),
		fmt.Sprintf("the copy holds the %d MiB the tree rewrote (kernel pages, charged to the tree's cgroup)", copied>>20))

	// Restore of the 1 GiB image.
	s.stop(b)
	start := time.Now()
	if r := run(b, 2*time.Minute, nil, "cp", img, m.path("restore", "a")); r.code != 0 {
		b.Fatalf("restore: %s", r)
	}
	restore := time.Since(start)
	row("restore 1 GiB via cp", fmt.Sprintf("%v, %.2f GB/s", restore.Round(time.Millisecond), gbps(size, restore)), "target >= 1 GB/s")
	killOutcome(b, m, "a")
	os.Remove(img)

	// A 4 GiB process, cat to a file.
	big := startStamp(b, 4096)
	img = filepath.Join(dir, "big.img")
	stall4, _ := big.stallDuring(b, func() { catTo(b, m.path(big.pid, "image"), img) })
	os.Remove(img)
	fork4 := big.ask(b, syscall.SIGTTOU, "fork_us")
	row("stall, 4 GiB, cat to an ext4 file", us(stall4), fmt.Sprintf("target <= 2x the 1 GiB stall: %.1fx; the 4 GiB fork: %s", float64(stall4)/float64(max(stall, 1)), us(fork4)))
	big.stop(b)

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nFIGURE\tVALUE\tNOTE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r[0], r[1], r[2])
	}
	tw.Flush()
	b.ReportMetric(float64(stall)/1e3, "stall-1GiB-ms")
	b.ReportMetric(float64(stall4)/1e3, "stall-4GiB-ms")
}

// stamp is tests/workload/stamp.c running.
type stamp struct {
	cmd    *exec.Cmd
	pid    int
	report string
}

func startStamp(b *testing.B, mib int) *stamp {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "stamp")
	mustRun(b, "gcc", "-O2", "-o", bin, filepath.Join(env.modRoot, "tests", "workload", "stamp.c"))
	s := &stamp{report: filepath.Join(b.TempDir(), "report")}
	s.cmd = exec.Command(bin, s.report, strconv.Itoa(mib))
	if err := s.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s.pid = s.cmd.Process.Pid
	b.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if data, _ := os.ReadFile(s.report); strings.Contains(string(data), "ready=1") {
			return s
		}
		if time.Now().After(deadline) {
			b.Fatal("stamp did not start")
		}
	}
}

// ask sends sig and returns the value of key the process then reports.
func (s *stamp) ask(b *testing.B, sig syscall.Signal, key string) int64 {
	b.Helper()
	data, _ := os.ReadFile(s.report)
	seen := len(data)
	if err := syscall.Kill(s.pid, sig); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		data, _ := os.ReadFile(s.report)
		for _, l := range strings.Split(string(data[seen:]), "\n") {
			if v, ok := strings.CutPrefix(l, key+"="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					b.Fatal(err)
				}
				return n
			}
		}
	}
	b.Fatalf("stamp did not report %s", key)
	return 0
}

// stallDuring returns the longest stall (µs) the process observed while fn
// ran, and how long fn took.
func (s *stamp) stallDuring(b *testing.B, fn func()) (int64, time.Duration) {
	b.Helper()
	syscall.Kill(s.pid, syscall.SIGUSR1) // forget earlier stalls
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	fn()
	took := time.Since(start)
	return s.ask(b, syscall.SIGUSR2, "maxgap_us"), took
}

func (s *stamp) stop(b *testing.B) {
	b.Helper()
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

func us(v int64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.1f ms", float64(v)/1000)
	}
	return fmt.Sprintf("%.2f ms", float64(v)/1000)
}

// throttledRead reads f through at most rate bytes per second, in 1 MiB
// reads.
func throttledRead(b *testing.B, f *os.File, rate float64) {
	buf := make([]byte, 1<<20)
	start := time.Now()
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return
		}
		if err != nil {
			b.Errorf("read at %d: %v", n, err)
			return
		}
		if ahead := time.Duration(float64(n)/rate*1e9) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
}

// waitSnapshotEnd waits until pid's directory holds no snapshot.
func waitSnapshotEnd(b *testing.B, m *mount, pid int) {
	b.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, err := os.ReadFile(m.path(pid, "status"))
		if err == nil && strings.Contains(string(data), `"state": "none"`) {
			return
		}
	}
	b.Fatalf("the snapshot of %d did not end", pid)
}

// residentSize is VmRSS of pid.
func residentSize(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// copiesPrivate sums what the children of pid hold privately (its
// snapshot's copy: the pages the process rewrote since).
func copiesPrivate(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var sum int64
	for _, c := range strings.Fields(string(data)) {
		rollup, _ := os.ReadFile("/proc/" + c + "/smaps_rollup")
		for _, l := range strings.Split(string(rollup), "\n") {
			for _, key := range []string{"Private_Clean:", "Private_Dirty:"} {
				if v, ok := strings.CutPrefix(l, key); ok {
					kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
					sum += kb << 10
				}
			}
		}
	}
	return sum
}
