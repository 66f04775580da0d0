package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ptyShell is an interactive bash on a pseudo-terminal of its own, as a
// person at a terminal has: a session whose controlling terminal is the
// pty, with job control. The test types into the pty's master side and
// reads what the terminal shows.
type ptyShell struct {
	t      *testing.T
	master *os.File
	slave  string // the terminal's path, /dev/pts/N
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer // everything the terminal showed
	seen   int          // how far expect has read
	marker int
}

// openPty opens a new pseudo-terminal pair: the master, and the slave's
// path.
func openPty(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("ptsname: %v", err)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

// startShell starts bash on a new pty, with dir as its working directory
// and path prepended to PATH; every process it leaves is killed, by pid,
// when the test ends.
func startShell(t *testing.T, dir, path string) *ptyShell {
	t.Helper()
	master, slave := openPty(t)
	s, err := os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sh := &ptyShell{t: t, master: master, slave: slave}
	cmd := exec.Command("bash", "--norc", "--noprofile", "-i")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + path + ":" + os.Getenv("PATH"), "PS1=$ ", "TERM=dumb", "HOME=" + dir}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		master.Close()
		t.Fatalf("start bash: %v", err)
	}
	sh.cmd = cmd
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			sh.mu.Lock()
			sh.out.Write(buf[:n])
			sh.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		killTree(t, cmd.Process.Pid)
		cmd.Process.Kill()
		cmd.Wait()
		master.Close()
		if t.Failed() {
			t.Logf("the terminal showed:\n%s", sh.screen())
		}
	})
	return sh
}

// screen is everything the terminal showed so far.
func (sh *ptyShell) screen() string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.out.String()
}

// typeLine types line and Enter.
func (sh *ptyShell) typeLine(line string) {
	sh.t.Helper()
	if _, err := sh.master.Write([]byte(line + "\n")); err != nil {
		sh.t.Fatalf("type %q: %v", line, err)
	}
}

// typeKey types raw bytes (a control character: "\x04" is Ctrl-D).
func (sh *ptyShell) typeKey(b string) {
	sh.t.Helper()
	if _, err := sh.master.Write([]byte(b)); err != nil {
		sh.t.Fatalf("type %q: %v", b, err)
	}
}

// expect waits until the terminal shows want after what earlier expects
// consumed, and returns what it showed up to and including it.
func (sh *ptyShell) expect(want string, timeout time.Duration) string {
	sh.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		sh.mu.Lock()
		rest := sh.out.String()[sh.seen:]
		if i := strings.Index(rest, want); i >= 0 {
			sh.seen += i + len(want)
			sh.mu.Unlock()
			return rest[:i+len(want)]
		}
		sh.mu.Unlock()
		if time.Now().After(deadline) {
			sh.t.Fatalf("the terminal did not show %q within %v; it showed:\n%s", want, timeout, rest)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run types a command line, waits for it to finish and returns what the
// terminal showed meanwhile and its exit status: a second line prints a
// marker with the status, spelled so that the echo of what was typed
// (which the terminal may show twice: as typed ahead, and as the shell
// reads it) never reads as the marker itself.
func (sh *ptyShell) run(line string, timeout time.Duration) (string, int) {
	sh.t.Helper()
	sh.marker++
	sh.typeLine(line) // on a line of its own: line may end in a comment
	sh.typeLine(fmt.Sprintf(`echo "__done_%d_""_$?="`, sh.marker))
	done := regexp.MustCompile(fmt.Sprintf(`__done_%d__(\d+)=`, sh.marker))
	deadline := time.Now().Add(timeout)
	for {
		sh.mu.Lock()
		rest := sh.out.String()[sh.seen:]
		if m := done.FindStringSubmatchIndex(rest); m != nil {
			sh.seen += m[1]
			sh.mu.Unlock()
			code, _ := strconv.Atoi(rest[m[2]:m[3]])
			return rest[:m[0]], code
		}
		sh.mu.Unlock()
		if time.Now().After(deadline) {
			sh.t.Fatalf("%q did not finish within %v; the terminal showed:\n%s", line, timeout, rest)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
