package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/fs"
)

func runCheckpoint(args []string) error {
	flags := newFlags("checkpoint")
	out := flags.StringP("output", "o", "-", "write the image to FILE (- for standard output)")
	modeName := flags.String("mode", "auto", "how the tree is recorded: auto, container or subtree")
	external := flags.String("external", "replace", externalHelp)
	stats := flags.Bool("stats", false, "print the snapshot's figures (tasks, bytes, pages, capture and frozen ms), as JSON on standard error")
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
	err = checkpointTo(pid, f, checkpoint.Options{Mode: mode, ReplaceExternal: replace}, *stats)
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

// checkpointTo freezes the subtree of pid, lays its image out and copies it
// to f, as a reader of the mount's image file would, then lets the tree
// run. A large image shows its progress on a terminal; stats prints the
// snapshot's figures (those of the mount's status file) on standard error.
func checkpointTo(pid int, f *os.File, opt checkpoint.Options, stats bool) error {
	// Ctrl-C ends the checkpoint and lets the tree run on.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	start := time.Now()
	l, err := checkpoint.Lay(ctx, pid, opt)
	if err != nil {
		return err
	}
	laid := time.Now()
	// An interrupt while the image is copied closes the layout: the copy
	// fails, and the tree runs on.
	defer context.AfterFunc(ctx, l.Close)()
	bar := newProgress("checkpoint", l.Size())
	w := bufio.NewWriterSize(bar.writer(f), 1<<20)
	n, err := l.WriteTo(w)
	l.Close() // every byte is out of the tree: it runs on
	released := time.Now()
	if ctx.Err() != nil {
		bar.end()
		return fmt.Errorf("pid %d: interrupted after %d of %d bytes; the tree runs on", pid, n, l.Size())
	}
	if err == nil {
		err = w.Flush()
	}
	bar.end()
	if err != nil {
		return err
	}
	if stats {
		res := l.Result()
		fig := fs.FiguresOf(res, start)
		fig.FrozenMS = fs.Millis(res.Frozen + released.Sub(laid))
		fig.Released = released
		if at := l.Released(); !at.IsZero() {
			// It ran on once laid out, its pages copied.
			fig.FrozenMS, fig.Released = fs.Millis(res.Frozen), at
		}
		fig.BytesRead, fig.ReadMS, fig.ReadThrough = n, fs.Millis(released.Sub(laid)), true
		enc := json.NewEncoder(os.Stderr)
		enc.SetIndent("", "  ")
		return enc.Encode(fig)
	}
	return nil
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
