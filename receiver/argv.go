package receiver

import (
	"errors"
	"flag"
	"io"
	"strconv"
	"strings"

	"github.com/gitreceive/gitreceive/receiver/apps"
)

// argv is a command line as the dispatcher parsed it: the words that are
// not options (the command's name first) and the options the command
// declares (command.flags), which may stand anywhere among the words.
type argv struct {
	words []string
	flags *flag.FlagSet
}

// parseArgv parses args (the name first) with the options cmd declares. A
// command that declares none gets its words as they are: `keys` and `nodes`
// share their parsers with the local CLI, and `run` passes everything after
// its SCRIPT to the script.
func parseArgv(cmd command, args []string) (argv, error) {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if cmd.flags == nil {
		return argv{words: args, flags: fs}, nil
	}
	cmd.flags(fs)
	words, rest := args[:1:1], args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return argv{}, flagError(err, rest, cmd.usage)
		}
		consumed := len(rest) - len(fs.Args())
		if consumed > 0 && rest[consumed-1] == "--" {
			words = append(words, fs.Args()...)
			break
		}
		rest = fs.Args()
		if len(rest) > 0 {
			words, rest = append(words, rest[0]), rest[1:]
		}
	}
	return argv{words: words, flags: fs}, nil
}

// flagError is the user's sentence for what package flag refused, naming
// the option as it was written.
func flagError(err error, args []string, usage string) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		for _, a := range args {
			if strings.TrimLeft(a, "-") == name || strings.HasPrefix(strings.TrimLeft(a, "-"), name+"=") {
				return apps.Failf("unknown option %q; usage: %s", a, usage)
			}
		}
		return apps.Failf("unknown option -%s; usage: %s", name, usage)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return apps.Failf("option -%s needs a value; usage: %s", name, usage)
	}
	// package flag does not wrap what a value's Set returned.
	if strings.HasSuffix(msg, errLines.Error()) {
		return apps.Failf("%v", errLines)
	}
	return apps.Failf("%s; usage: %s", msg, usage)
}

func (a argv) bool(name string) bool     { return a.flags.Lookup(name).Value.(flag.Getter).Get().(bool) }
func (a argv) string(name string) string { return a.flags.Lookup(name).Value.String() }
func (a argv) int(name string) int       { return a.flags.Lookup(name).Value.(flag.Getter).Get().(int) }

// linesValue is logs' -n: a number of lines from 0 to 100000.
type linesValue int

var errLines = errors.New("-n takes a number of lines from 0 to 100000")

func (n *linesValue) String() string { return strconv.Itoa(int(*n)) }
func (n *linesValue) Get() any       { return int(*n) }
func (n *linesValue) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v > 100000 {
		return errLines
	}
	*n = linesValue(v)
	return nil
}

// jsonFlag declares --json, which every listing command takes.
func jsonFlag(fs *flag.FlagSet) { fs.Bool("json", false, "print JSON") }

// positional is a target func for commands whose APP[@BRANCH] is the
// first word, given how many words (the name included) they take and
// which options they require.
func positional(usage string, n int, required ...string) func(argv) (string, error) {
	return func(a argv) (string, error) {
		if len(a.words) != n {
			return "", apps.Failf("usage: %s", usage)
		}
		for _, name := range required {
			if a.string(name) == "" {
				return "", apps.Failf("usage: %s", usage)
			}
		}
		return a.words[1], nil
	}
}

// noWords checks that a command without a target got only its options.
func noWords(a argv, usage string) error {
	if len(a.words) != 1 {
		return apps.Failf("usage: %s", usage)
	}
	return nil
}
