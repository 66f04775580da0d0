package tests

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHelp: `ckptfs COMMAND --help` (and -h) prints the command's usage
// and flags on standard output and exits 0; a bad flag fails with a
// message; no command at all prints the list and exits 2.
func TestHelp(t *testing.T) {
	requireEnv(t)
	for _, cmd := range []string{"mount", "checkpoint", "inspect", "restore"} {
		for _, flag := range []string{"--help", "-h"} {
			r := ckptfs(t, cmd, flag)
			if r.code != 0 {
				t.Errorf("%s: want exit 0", r)
			}
			if out := string(r.stdout); !strings.HasPrefix(out, "usage: ckptfs "+cmd+" ") {
				t.Errorf("%s %s printed %q, want its usage on standard output", cmd, flag, out)
			}
			if len(r.stderr) > 0 {
				t.Errorf("%s %s wrote %q on standard error", cmd, flag, r.stderr)
			}
		}
		r := ckptfs(t, cmd, "--no-such-flag")
		if r.code == 0 || !strings.Contains(string(r.stderr), "unknown flag: --no-such-flag") {
			t.Errorf("%s --no-such-flag: %s, want a failure naming the flag", cmd, r)
		}
	}
	if r := ckptfs(t); r.code != 2 || !strings.Contains(string(r.stderr), "commands:") {
		t.Errorf("ckptfs without a command: %s, want the list of commands and exit 2", r)
	}
	if r := ckptfs(t, "help"); r.code != 0 {
		t.Errorf("ckptfs help: %s, want exit 0", r)
	}
}

// TestCheckpointStats: ckptfs checkpoint --stats prints the snapshot's
// figures as the mount's status does (same names), consistent with the
// image it wrote; on a terminal, a large image's checkpoint and restore
// draw a progress bar on standard error and clear it, and without one
// they print nothing there.
func TestCheckpointStats(t *testing.T) {
	requireEnv(t)
	cmd, _ := startCounter(t, 80, 3)
	pid := cmd.Process.Pid
	img := filepath.Join(t.TempDir(), "counter.img")
	r := ckptfs(t, "checkpoint", "--stats", strconv.Itoa(pid), "-o", img)
	if r.code != 0 {
		t.Fatalf("checkpoint --stats: %s", r)
	}
	var fig struct {
		Mode        string   `json:"mode"`
		Tasks       int      `json:"tasks"`
		Processes   int      `json:"processes"`
		Threads     int      `json:"threads"`
		Bytes       int64    `json:"bytes"`
		Pages       int64    `json:"pages"`
		PageBytes   int64    `json:"page_bytes"`
		CaptureMS   *float64 `json:"capture_ms"`
		FrozenMS    float64  `json:"frozen_ms"`
		BytesRead   int64    `json:"bytes_read"`
		ReadThrough bool     `json:"read_through"`
	}
	if err := json.Unmarshal(r.stderr, &fig); err != nil {
		t.Fatalf("--stats printed %q: %v", r.stderr, err)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	rep := inspect(t, img)
	if fig.Bytes != fi.Size() || fig.BytesRead != fi.Size() || !fig.ReadThrough ||
		fig.Tasks != len(rep.Tasks) || fig.Processes+fig.Threads != fig.Tasks || fig.Processes != 1 ||
		fig.PageBytes < 80<<20 || fig.PageBytes != fig.Pages*4096 || fig.PageBytes >= fig.Bytes ||
		fig.CaptureMS == nil || fig.FrozenMS <= 0 || fig.Mode != "subtree" {
		t.Errorf("--stats: %s\nthe image has %d bytes and %d tasks", r.stderr, fi.Size(), len(rep.Tasks))
	}
	if len(r.stdout) != 0 {
		t.Errorf("checkpoint -o FILE wrote %d bytes on standard output", len(r.stdout))
	}
	// Not a terminal: no bar.
	if r := ckptfs(t, "checkpoint", strconv.Itoa(pid), "-o", img); r.code != 0 || len(r.stderr) != 0 {
		t.Errorf("checkpoint without a terminal: %s, want nothing on standard error", r)
	}

	for _, args := range [][]string{
		{"checkpoint", strconv.Itoa(pid), "-o", img},
		{"inspect", img}, // an image to read, not to draw a bar for
	} {
		bar := onTerminal(t, args...)
		drawn := strings.Contains(bar, "ckptfs: checkpoint [") && strings.Contains(bar, "100%")
		if want := args[0] == "checkpoint"; drawn != want || (want && !strings.HasSuffix(bar, "\r\033[K")) {
			t.Errorf("%s with standard error on a terminal wrote %q there; want a bar %v, cleared at the end", args[0], bar, want)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	bar := onTerminal(t, "restore", img)
	defer killTree(t, pid)
	if !strings.Contains(bar, "ckptfs: restore [") || !strings.HasSuffix(bar, "\r\033[K") {
		t.Errorf("restore with standard error on a terminal wrote %q there, want a progress bar cleared at the end", bar)
	}
}

// onTerminal runs ckptfs with args, its standard error a new pty's, and
// returns what it wrote there.
func onTerminal(t *testing.T, args ...string) string {
	t.Helper()
	master, slave := openPty(t)
	defer master.Close()
	s, err := os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Raw output: the line discipline would turn \n into \r\n.
	if tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS); err == nil {
		tio.Oflag &^= unix.OPOST
		unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio)
	}
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(&out, master) // ends with EIO once the slave is closed by all
	}()
	c := exec.Command(env.bin, args...)
	c.Stderr = s
	err = c.Run()
	s.Close()
	if err != nil {
		t.Fatalf("ckptfs %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	select {
	case <-copied:
	case <-time.After(cmdTimeout):
		t.Fatalf("ckptfs %s: its terminal did not close", strings.Join(args, " "))
	}
	return out.String()
}
