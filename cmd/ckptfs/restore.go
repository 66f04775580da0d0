package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/restart"
)

func runRestore(args []string) error {
	flags := newFlags("restore")
	shellJob := flags.Bool("shell-job", false, "give the restored tree this terminal (standard input) where it had one, "+
		"its foreground group the foreground, and wait for it to end, as a shell's job")
	if err := parse(flags, args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return fmt.Errorf("want one FILE (or - for standard input), have %d", flags.NArg())
	}
	name := flags.Arg(0)
	var opt restart.Options
	if *shellJob {
		if name == "-" {
			return fmt.Errorf("--shell-job reads the terminal from standard input: give the image as a FILE")
		}
		if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err != nil {
			return fmt.Errorf("--shell-job: standard input is not a terminal: %w", err)
		}
		opt.Terminal, opt.Foreground = os.Stdin, true
	}
	f := os.Stdin
	if name != "-" {
		var err error
		if f, err = os.Open(name); err != nil {
			return err
		}
		defer f.Close()
	}
	size := int64(-1) // unknown, for a pipe: no progress bar
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	bar := newProgress("restore", size)
	// Ctrl-C ends the restore; what it built is torn down.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	res, err := restart.Restore(ctx, bufio.NewReaderSize(bar.reader(f), 1<<20), opt)
	stop()
	bar.end()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return err
	}
	if res.Foreground != nil && res.Foreground.PGid != 0 {
		return waitShellJob(res.Root)
	}
	return nil
}

// waitShellJob waits, as a shell waits for its foreground job, until the
// restored root has exited, then takes the terminal back for its own group:
// leaving first would let the shell take the terminal from the tree while
// it runs.
func waitShellJob(root int) error {
	pidfd, err := unix.PidfdOpen(root, 0)
	if err != nil {
		return nil // gone already
	}
	defer unix.Close(pidfd)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err == unix.EINTR {
			continue
		} else if err != nil {
			return os.NewSyscallError("poll", err)
		}
		break
	}
	signal.Ignore(unix.SIGTTOU)
	defer signal.Reset(unix.SIGTTOU)
	return unix.IoctlSetPointerInt(int(os.Stdin.Fd()), unix.TIOCSPGRP, unix.Getpgrp())
}
