// Command ckptfs serves checkpoints of live process trees as files, and
// reads, writes and inspects their images without the filesystem.
//
//	ckptfs mount [MOUNTPOINT]          serve /mnt/ckpt (default) in the foreground
//	ckptfs checkpoint PID [-o FILE]    write the image of PID's subtree
//	ckptfs inspect [--json] FILE|-     describe an image, pids or tree file
//	ckptfs inspect --diff A B          say what changed between two images
//	ckptfs restore FILE                restart the tree of an image
//
// This package only parses flags; the work is in fs, checkpoint and image.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

	// The restart seed runs before the Go runtime when ckptfs re-executes
	// itself to grow a restored forest.
	_ "github.com/ckptfs/ckptfs/internal/seed"

	"github.com/ckptfs/ckptfs/internal/ptrace"
)

type command struct {
	name, args, help string
	run              func(args []string) error // nil: another usage of the command above
}

// exitStatus is an error that sets the exit status other than 1: a
// command's answer (inspect --diff: the images differ), with err, if any,
// reported as any error is.
type exitStatus struct {
	code int
	err  error
}

func (e exitStatus) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// commands is filled in init: their run functions print their own help
// from it (parse), which a plain initializer could not refer back to.
var commands []command

func init() {
	commands = []command{
		{"mount", "[MOUNTPOINT]", "serve checkpoints of live processes as files (default /mnt/ckpt)", runMount},
		{"checkpoint", "PID [-o FILE]", "write the image of the subtree rooted at PID", runCheckpoint},
		{"inspect", "[--json|--plan] FILE|-", "describe an image, a pids or tree file, or its restart plan", runInspect},
		{"inspect", "--diff [--json] A B", "say what changed between two images (exit 0 same, 1 differ, 2 error)", nil},
		{"restore", "FILE|-", "restart the tree of an image", runRestore},
	}
}

func main() {
	// Tracers (checkpoint's freeze, restart's forest) must never run on
	// the main thread, which cannot exit to let its tracees go.
	ptrace.ReserveMainThread()
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	if path := os.Getenv("CKPTFS_CPUPROFILE"); path != "" {
		// A developer's aid: profile one command.
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	for _, c := range commands {
		if c.name == os.Args[1] && c.run != nil {
			err := c.run(os.Args[2:])
			if errors.Is(err, errHelp) {
				return
			}
			code := 0
			var status exitStatus
			if errors.As(err, &status) {
				code, err = status.code, status.err
			} else if err != nil {
				code = 1
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "ckptfs: %s: %v\n", c.name, err)
			}
			if code != 0 {
				pprof.StopCPUProfile()
				os.Exit(code)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "ckptfs: unknown command %q\n", os.Args[1])
	usage()
	os.Exit(2)
}

func usage() {
	var b strings.Builder
	b.WriteString("usage: ckptfs COMMAND [ARGS]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %-24s %s\n", c.name, c.args, c.help)
	}
	b.WriteString("\nRun 'ckptfs COMMAND --help' for a command's flags.\n")
	fmt.Fprint(os.Stderr, b.String())
}
