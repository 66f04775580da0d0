package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/restart"
)

func runInspect(args []string) error {
	flags := newFlags("inspect")
	asJSON := flags.Bool("json", false, "print JSON instead of text")
	asPlan := flags.Bool("plan", false, "print how restart would rebuild the forest")
	if err := parse(flags, args); err != nil {
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
	if *asPlan {
		if err := restart.WritePlan(w, img, sections); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return w.Flush()
	}
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
