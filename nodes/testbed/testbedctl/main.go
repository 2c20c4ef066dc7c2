// Command testbedctl starts and stops a test bed of local SSH nodes for
// manual testing (make testbed-up / make testbed-down).
//
//	testbedctl up   [--prefix gr] [--subnet 10.77.0.0/24] [--count 3] [--key FILE.pub] [--dir DIR]
//	testbedctl down [--prefix gr] [--dir DIR]
//
// up leaves the nodes running after it exits; each node's init is this
// binary, re-executed (see package testbed).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

const (
	defaultPrefix = "gr"
	defaultSubnet = "10.77.0.0/24"
	defaultCount  = 3
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testbedctl:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: testbedctl up|down [flags]")
	}
	switch args[0] {
	case "up":
		return runUp(args[1:])
	case "down":
		return runDown(args[1:])
	default:
		return fmt.Errorf("unknown command %q; want up or down", args[0])
	}
}

// defaultDir keeps beds with different prefixes apart.
// stateDir is the absolute state directory: dir, or by default one per prefix.
func stateDir(dir, prefix string) (string, error) {
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "gitreceive-testbed-"+prefix)
	}
	return filepath.Abs(dir)
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", fs.Name(), fs.Args())
	}
	return nil
}
