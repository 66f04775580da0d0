package tests

import (
	"strings"
	"testing"
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
