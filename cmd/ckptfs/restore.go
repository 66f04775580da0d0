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
	if err := parse(flags, args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return fmt.Errorf("want one FILE (or - for standard input), have %d", flags.NArg())
	}
	name := flags.Arg(0)
	f := os.Stdin
	if name != "-" {
		var err error
		if f, err = os.Open(name); err != nil {
			return err
		}
		defer f.Close()
	}
	// Ctrl-C ends the restore; what it built is torn down.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	res, err := restart.Restore(ctx, bufio.NewReaderSize(f, 1<<20), restart.Options{})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}
