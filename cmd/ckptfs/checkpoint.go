package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/ckptfs/ckptfs/checkpoint"
)

func runCheckpoint(args []string) error {
	flags := pflag.NewFlagSet("checkpoint", pflag.ContinueOnError)
	out := flags.StringP("output", "o", "-", "write the image to FILE (- for standard output)")
	modeName := flags.String("mode", "auto", "how the tree is recorded: auto, container or subtree")
	external := flags.String("external", "refuse", "descriptors leading outside the tree: refuse, or replace with /dev/null at restore")
	stats := flags.Bool("stats", false, "print how long the tree was frozen and how large the image is, on standard error")
	if err := flags.Parse(args); err != nil {
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
	if *out != "-" {
		if f, err = os.Create(*out); err != nil {
			return err
		}
	}
	w := bufio.NewWriterSize(f, 1<<20)
	res, err := checkpoint.Write(w, pid, checkpoint.Options{Mode: mode, ReplaceExternal: replace})
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
			os.Remove(*out) // never leave a partial image behind
		}
	}
	return err
}
