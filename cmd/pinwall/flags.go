package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// errHelp ends a command that was asked for its help (-h, -help, --help):
// the flags were printed to stdout and the exit status is 0.
var errHelp = &exitError{code: 0, err: errors.New("")}

// newFlagSet returns a flag set for a command whose usage line is usage.
// When args ask for help the flags print to stdout (the help was asked
// for), otherwise to stderr (an error prints them).
func newFlagSet(name, usage string, args []string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	out := stderr
	if wantsHelp(args) {
		out = stdout
	}
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// wantsHelp reports whether args ask for help before a "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// flagError turns a flag parsing error into the command's result: the
// help asked for (exit 0), or a usage error (exit 2).
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	return &exitError{code: 2, err: err}
}

// helpOnly handles a command without flags: -h and friends print its usage
// to stdout (exit 0); any other argument is a usage error.
func helpOnly(usage string, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return nil
	}
	if wantsHelp(args[:1]) {
		fmt.Fprintf(stdout, "Usage: %s\n", usage)
		return errHelp
	}
	return usageError("%s takes no arguments", usage)
}
