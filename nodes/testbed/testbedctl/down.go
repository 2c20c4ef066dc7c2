package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/gitreceive/gitreceive/nodes/testbed"
)

func runDown(args []string) error {
	flags := flag.NewFlagSet("down", flag.ContinueOnError)
	prefix := flags.String("prefix", "", "name prefix (default: from DIR's state file, else "+defaultPrefix+")")
	dir := flags.String("dir", "", "state directory (default: $TMPDIR/gitreceive-testbed-PREFIX)")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	absDir, err := stateDir(*dir, valueOr(*prefix, defaultPrefix))
	if err != nil {
		return err
	}
	st, err := loadState(absDir)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing recorded: still clear namespaces and links of the prefix.
		st = state{Prefix: valueOr(*prefix, defaultPrefix), Dir: absDir}
	} else if err != nil {
		return err
	}
	if *prefix != "" && st.Prefix != "" && *prefix != st.Prefix {
		return fmt.Errorf("--prefix %s, but %s records prefix %s", *prefix, statePath(absDir), st.Prefix)
	}

	if err := testbed.CleanupStale(st.Prefix); err != nil {
		return err
	}
	// Only what up recorded as created, newest first.
	var errs []error
	for i := len(st.Created) - 1; i >= 0; i-- {
		errs = append(errs, os.RemoveAll(st.Created[i]))
	}
	if err := os.Remove(statePath(absDir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if st.CreatedDir {
		// Remove, not RemoveAll: anything someone else put there stays.
		if err := os.Remove(absDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func valueOr(value, fallback string) string {
	if value == "" {
		return fallback
	}
	return value
}
