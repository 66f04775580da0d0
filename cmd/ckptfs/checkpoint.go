package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/checkpoint"
)

func runCheckpoint(args []string) error {
	flags := newFlags("checkpoint")
	out := flags.StringP("output", "o", "-", "write the image to FILE (- for standard output)")
	modeName := flags.String("mode", "auto", "how the tree is recorded: auto, container or subtree")
	external := flags.String("external", "replace", externalHelp)
	stats := flags.Bool("stats", false, "print how long the tree was frozen and how large the image is, on standard error")
	if err := parse(flags, args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return fmt.Errorf("want one PID, have %d arguments", flags.NArg())
	}
	pid, err := strconv.Atoi(flags.Arg(0))
	if err != nil || pid <= 0 {
		return fmt.Errorf("bad PID %q", flags.Arg(0))
	}
	mode, err := checkpoint.ParseMode(*modeName)
	if err != nil {
		return err
	}
	replace, err := parseExternal(*external)
	if err != nil {
		return err
	}
	f := os.Stdout
	var created os.FileInfo // the regular file the image goes to, if any
	if *out != "-" {
		if f, created, err = createOutput(*out); err != nil {
			return err
		}
	}
	w := bufio.NewWriterSize(f, 1<<20)
	// Ctrl-C ends the checkpoint and lets the tree run on.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	res, err := checkpoint.Write(ctx, w, pid, checkpoint.Options{Mode: mode, ReplaceExternal: replace})
	if err == nil {
		err = w.Flush()
	}
	if err == nil && *stats {
		fmt.Fprintf(os.Stderr, "ckptfs: checkpoint: %d tasks, %d bytes, %s mode, frozen_ms=%.1f\n",
			res.Tasks, res.Size, res.Mode, float64(res.Frozen.Microseconds())/1000)
	}
	if f != os.Stdout {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			removeOutput(*out, created) // never leave a partial image behind
		}
	}
	return err
}

// createOutput opens path for the image, truncating it, and says whether
// it is a regular file: only such a file may be removed again on failure.
func createOutput(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		fi = nil
	}
	return f, fi, nil
}

// removeOutput removes the partial image at path, if path still names the
// regular file it was written to. A device, FIFO or socket given as the
// output (-o /dev/null) is never removed: removing /dev/null once left
// the next shell redirection to create a regular file in its place.
func removeOutput(path string, created os.FileInfo) {
	if created == nil {
		return
	}
	if now, err := os.Lstat(path); err == nil && os.SameFile(now, created) {
		os.Remove(path)
	}
}
