package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// errHelp: the command printed its help as asked; it succeeded.
var errHelp = errors.New("help printed")

// newFlags returns the flag set of command name, which prints nothing by
// itself: parse says what went wrong, and prints help when asked.
func newFlags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.Usage = func() {}
	fs.SetOutput(discard{})
	return fs
}

// parse parses args; asked for help (-h, --help), it prints the command's
// usage and flags on standard output and returns errHelp.
func parse(fs *pflag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if !errors.Is(err, pflag.ErrHelp) {
		return err
	}
	var helps []string
	for _, c := range commands {
		if c.name == fs.Name() {
			lead := "usage:"
			if len(helps) > 0 {
				lead = "   or:"
			}
			fmt.Fprintf(os.Stdout, "%s ckptfs %s %s\n", lead, c.name, c.args)
			helps = append(helps, c.help)
		}
	}
	fmt.Fprintf(os.Stdout, "\n%s.\n", strings.Join(helps, "; "))
	if fs.HasFlags() {
		fmt.Fprintf(os.Stdout, "\nflags:\n%s", fs.FlagUsages())
	}
	return errHelp
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
