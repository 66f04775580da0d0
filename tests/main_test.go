package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/testenv"
)

// env is what TestMain prepared for every test.
var env struct {
	skip     string // why the integration tests cannot run here; "" if they can
	fail     string // why they must fail (a build broke, or CI demands root)
	bin      string // the ckptfs binary
	forest   string // the workload program
	sentinel string // the self-checking workload of the crash tests
	workDir  string // holds the binaries; removed at exit
	modRoot  string
	// graceFlag: `ckptfs mount` accepts --grace DURATION.
	graceFlag bool
}

// requireEnv skips or fails t when TestMain found the environment unusable.
// Every integration test calls it first.
func requireEnv(t testing.TB) {
	t.Helper()
	if env.fail != "" {
		t.Fatal(env.fail)
	}
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(receiverEnv); spec != "" {
		os.Exit(receive(spec)) // the test binary, run as a migration's receiver
	}
	code := func() int {
		setup()
		if env.workDir != "" {
			defer os.RemoveAll(env.workDir)
		}
		if env.skip != "" {
			fmt.Fprintf(os.Stderr, "tests: skipping the ckptfs integration tests: %s\n", env.skip)
		}
		if env.fail != "" {
			fmt.Fprintf(os.Stderr, "tests: the ckptfs integration tests cannot run: %s\n", env.fail)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// setup checks the environment, makes this process a child subreaper and
// builds the binary and the workloads once.
func setup() {
	testenv.CloseInherited()
	switch {
	case os.Geteuid() != 0:
		env.skip = "not running as root (the tests mount FUSE and ptrace real processes)"
	default:
		if _, err := os.Stat("/dev/fuse"); err != nil {
			env.skip = fmt.Sprintf("/dev/fuse is unusable: %v", err)
		}
	}
	if env.skip != "" {
		if os.Getenv("CKPTFS_REQUIRE_ROOT") == "1" {
			env.fail = env.skip + " (CKPTFS_REQUIRE_ROOT=1 makes this a failure)"
			env.skip = ""
		}
		return
	}

	// Orphans of the workloads come to us, so we can reap what we kill and
	// its pids are free at once.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		env.fail = fmt.Sprintf("PR_SET_CHILD_SUBREAPER: %v", err)
		return
	}

	root, err := moduleRoot()
	if err != nil {
		env.fail = err.Error()
		return
	}
	env.modRoot = root
	dir, err := os.MkdirTemp("", "ckptfs-tests-")
	if err != nil {
		env.fail = err.Error()
		return
	}
	env.workDir = dir
	// Searchable by all: tests run the workload as another user too.
	if err := os.Chmod(dir, 0o755); err != nil {
		env.fail = err.Error()
		return
	}
	env.bin = filepath.Join(dir, "ckptfs")
	env.forest = filepath.Join(dir, "forest")

	if out, err := runSetup(2*time.Minute, root, goTool(), "build", "-o", env.bin, "./cmd/ckptfs"); err != nil {
		env.fail = fmt.Sprintf("building ./cmd/ckptfs failed (%v):\n%s", err, out)
		return
	}
	if err := compileWorkload(root, "forest.c", "-O1", env.forest); err != nil {
		env.fail = err.Error()
		return
	}
	env.sentinel = filepath.Join(dir, "sentinel")
	if err := compileWorkload(root, "sentinel.c", "-O2", env.sentinel); err != nil {
		env.fail = err.Error()
		return
	}
	// --grace is newer than some daemons: use it where it is known.
	help, _ := runSetup(time.Minute, root, env.bin, "mount", "--help")
	env.graceFlag = bytes.Contains(help, []byte("--grace"))
}

// compileWorkload compiles tests/workload/<src> into out. Static binaries
// start faster and do not depend on the loader; it falls back to a dynamic
// one where no static libc is installed.
func compileWorkload(root, src, opt, out string) error {
	path := filepath.Join(root, "tests", "workload", src)
	args := []string{opt, "-pthread", "-Wall", "-o", out, path}
	if _, err := runSetup(time.Minute, root, "gcc", append([]string{"-static"}, args...)...); err != nil {
		if msg, err := runSetup(time.Minute, root, "gcc", args...); err != nil {
			return fmt.Errorf("compiling %s failed (%v):\n%s", path, err, msg)
		}
	}
	return nil
}

// moduleRoot finds the directory holding go.mod, upwards from the test's
// working directory (the package directory under go test).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// goTool returns the go command: go test puts its own GOROOT/bin first in
// the test's PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// runSetup runs a build step with a timeout, returning its combined output.
func runSetup(timeout time.Duration, dir, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return out.Bytes(), err
}
