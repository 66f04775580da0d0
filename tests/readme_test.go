package tests

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestReadmeUsage types the README's "Use" section, line by line, into an
// interactive shell on a terminal, as a new user would (the mount's
// defaults, ckptfs on PATH, /mnt/ckpt being the test's mount): every line
// must succeed. The process it starts has the terminal as its standard
// input, output and error.
func TestReadmeUsage(t *testing.T) {
	requireEnv(t)
	lines := readmeUsage(t)
	m := testMount(t)
	work := t.TempDir()
	sh := startShell(t, work, filepath.Dir(env.bin))
	sh.expect("$ ", readyTimeout)
	var pid int
	t.Cleanup(func() {
		if pid > 0 {
			killTree(t, pid)
		}
	})
	for _, line := range lines {
		line = strings.ReplaceAll(line, "/mnt/ckpt", m.dir)
		out, code := sh.run(line, cmdTimeout)
		if code != 0 {
			t.Fatalf("README line %q failed with status %d:\n%s", line, code, out)
		}
		if strings.HasPrefix(line, "sleep 1000 &") {
			got, _ := sh.run("echo pid=$pid", cmdTimeout)
			if p := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(got); p != nil {
				pid, _ = strconv.Atoi(p[1])
			}
			// What the README promises: a process of a terminal.
			if in, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", pid)); err != nil || in != sh.slave {
				t.Fatalf("the README's process has %q (%v) as standard input, want the terminal %s", in, err, sh.slave)
			}
		}
		if strings.HasPrefix(line, "cat "+m.dir+"/restore/") {
			if !strings.Contains(out, `"state": "running"`) {
				t.Errorf("%q shows %q, want a running restore", line, out)
			}
			// Its terminal is gone with the restore through the mount.
			if in, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", pid)); err != nil || in != "/dev/null" {
				t.Errorf("the restored process has %q (%v) as standard input, want /dev/null", in, err)
			}
		}
	}
	if pid == 0 {
		t.Fatal("the README's first line started no process")
	}
}

// readmeUsage returns the command lines of the README's "Use" section:
// its indented code, comments kept (the shell ignores them).
func readmeUsage(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(env.modRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "## "):
			in = l == "## Use"
		case in && strings.HasPrefix(l, "    ") && strings.TrimSpace(l) != "":
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) == 0 {
		t.Fatal("README.md has no Use section with commands")
	}
	return lines
}
