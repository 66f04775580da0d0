// Command ckptfs serves checkpoints of live process trees as files, and
// reads, writes and inspects their images without the filesystem.
//
//	ckptfs mount [MOUNTPOINT]          serve /mnt/ckpt (default) in the foreground
//	ckptfs checkpoint PID [-o FILE]    write the image of PID's subtree
//	ckptfs inspect [--json] FILE|-     describe an image, pids or tree file
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
	run              func(args []string) error
}

// commands is filled in init: their run functions print their own help
// from it (parse), which a plain initializer could not refer back to.
var commands []command

func init() {
	commands = []command{
		{"mount", "[MOUNTPOINT]", "serve checkpoints of live processes as files (default /mnt/ckpt)", runMount},
		{"checkpoint", "PID [-o FILE]", "write the image of the subtree rooted at PID", runCheckpoint},
		{"inspect", "[--json|--plan] FILE|-", "describe an image, a pids or tree file, or its restart plan", runInspect},
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
		if c.name == os.Args[1] {
			err := c.run(os.Args[2:])
			if errors.Is(err, errHelp) {
				return
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "ckptfs: %s: %v\n", c.name, err)
				pprof.StopCPUProfile()
				os.Exit(1)
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
		fmt.Fprintf(&b, "  %-10s %-18s %s\n", c.name, c.args, c.help)
	}
	b.WriteString("\nRun 'ckptfs COMMAND --help' for a command's flags.\n")
	fmt.Fprint(os.Stderr, b.String())
}
