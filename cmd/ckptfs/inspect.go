package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/ckptfs/ckptfs/image"
)

func runInspect(args []string) error {
	flags := pflag.NewFlagSet("inspect", pflag.ContinueOnError)
	asJSON := flags.Bool("json", false, "print JSON instead of text")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return fmt.Errorf("want one FILE (or - for standard input), have %d", flags.NArg())
	}
	name := flags.Arg(0)
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	img, sections, err := image.ReadAny(bufio.NewReaderSize(r, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	w := bufio.NewWriter(os.Stdout)
	if *asJSON {
		err = image.WriteJSON(w, img, sections)
	} else {
		err = image.WriteText(w, img, sections)
	}
	if err == nil {
		err = w.Flush()
	}
	return err
}
