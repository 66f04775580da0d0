package main

import (
	"bufio"
	"errors"
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
	asDiff := flags.Bool("diff", false, "compare two images A B: exit 0 if identical, 1 if they differ, 2 on error")
	if err := parse(flags, args); err != nil {
		if *asDiff && !errors.Is(err, errHelp) {
			return diffStatus(err)
		}
		return err
	}
	if *asDiff {
		if *asPlan {
			return diffStatus(errors.New("--diff and --plan do not go together"))
		}
		return diffStatus(runDiff(flags.Args(), *asJSON))
	}
	if flags.NArg() != 1 {
		return fmt.Errorf("want one FILE (or - for standard input), have %d", flags.NArg())
	}
	name := flags.Arg(0)
	r, closeFile, err := openInput(name)
	if err != nil {
		return err
	}
	defer closeFile()
	rep, err := image.ReadReport(bufio.NewReaderSize(r, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	w := bufio.NewWriter(os.Stdout)
	if *asPlan {
		if err := restart.WritePlan(w, rep.Image, rep.Sections); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return w.Flush()
	}
	if *asJSON {
		err = rep.WriteJSON(w)
	} else {
		err = rep.WriteText(w)
	}
	if err == nil {
		err = w.Flush()
	}
	return err
}

// openInput opens a file to inspect, "-" being standard input.
func openInput(name string) (io.Reader, func(), error) {
	if name == "-" {
		return os.Stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// errDiffer is runDiff's answer when the images differ: exit status 1.
var errDiffer = errors.New("the images differ")

// runDiff compares two images and prints what changed.
func runDiff(args []string, asJSON bool) error {
	if len(args) != 2 {
		return fmt.Errorf("--diff wants two images A B (one of them may be - for standard input), have %d", len(args))
	}
	if args[0] == "-" && args[1] == "-" {
		return errors.New("--diff: only one image can come from standard input")
	}
	ra, closeA, err := openInput(args[0])
	if err != nil {
		return err
	}
	defer closeA()
	rb, closeB, err := openInput(args[1])
	if err != nil {
		return err
	}
	defer closeB()
	d, err := image.DiffImages(args[0], ra, args[1], rb)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	if asJSON {
		err = d.WriteJSON(w)
	} else {
		err = d.WriteText(w)
	}
	if err == nil {
		err = w.Flush()
	}
	switch {
	case err != nil:
		return err
	case !d.Identical:
		return errDiffer
	}
	return nil
}

// diffStatus gives `inspect --diff` diff(1)'s exit status: 0 for identical
// images, 1 for images that differ, 2 for trouble.
func diffStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case err == errDiffer:
		return exitStatus{code: 1}
	}
	return exitStatus{code: 2, err: err}
}
