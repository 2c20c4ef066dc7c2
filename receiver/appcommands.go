package receiver

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/gitreceive/gitreceive/receiver/apps"
)

const (
	releasesUsage = "releases APP[@BRANCH] [--json]"
	activateUsage = "activate APP[@BRANCH] vN|prev"
	logsUsage     = "logs APP[@BRANCH] [-n LINES] [-f] [--node NAME]"
)

// appTarget parses and authorizes the target of an app command.
func (s *Server) appTarget(c *call, arg string) (apps.Target, error) {
	t, err := apps.ParseTarget(arg)
	if err != nil {
		return t, c.fail("%v", err)
	}
	if !c.key.CanAccessApp(t.App) {
		return t, c.fail("key %q may not manage app %q; ask an admin to grant it", c.key.Name, t.App)
	}
	return t, nil
}

// releasesTarget: releases [--json] APP[@BRANCH].
func releasesTarget(args []string) (string, error) {
	args = slices.DeleteFunc(slices.Clone(args[1:]), func(a string) bool { return a == "--json" })
	if len(args) != 1 {
		return "", apps.Failf("usage: %s", releasesUsage)
	}
	return args[0], nil
}

func (s *Server) releasesCommand(c *call) error {
	rows, unreached, err := s.apps.Releases(c.ctx, c.target)
	if err != nil {
		return err
	}
	if slices.Contains(c.args[1:], "--json") {
		if err := printJSON(c, rows); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(c.stdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RELEASE\tCOMMIT\tPUSHER\tTIME\tSTATUS")
		for _, r := range rows {
			fmt.Fprintf(tw, "v%d\t%.7s\t%s\t%s\t%s\n", r.Number, r.Commit, r.Pusher, r.Time.Format("2006-01-02 15:04"), r.Status)
		}
		tw.Flush()
	}
	for _, err := range unreached {
		fmt.Fprintf(c.stderr(), "gitreceive: %v\n", err)
	}
	return nil
}

// printJSON prints v indented on stdout, as every --json does.
func printJSON(c *call, v any) error {
	enc := json.NewEncoder(c.stdout())
	enc.SetIndent("", "  ")
	if enc.Encode(v) != nil {
		return apps.ExitStatus(1)
	}
	return nil
}

func (s *Server) activateCommand(c *call) error {
	return s.apps.Activate(c.ctx, c.target, c.args[2], c.out)
}

// logsArgs are the arguments of logs.
type logsArgs struct {
	apps.LogsOptions
	target string // APP[@BRANCH]
}

// parseLogsArgs reads logs' arguments (args[0] is the name).
func parseLogsArgs(args []string) (logsArgs, error) {
	o := logsArgs{LogsOptions: apps.LogsOptions{Lines: 100}}
	var positional []string
	args = args[1:]
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-f":
			o.Follow = true
		case (a == "-n" || a == "--node") && i+1 < len(args):
			i++
			if a == "--node" {
				o.Node = args[i]
				continue
			}
			n, err := strconv.Atoi(args[i])
			if err != nil || n < 0 || n > 100000 {
				return o, apps.Failf("-n takes a number of lines from 0 to 100000")
			}
			o.Lines = n
		case strings.HasPrefix(a, "-"):
			return o, apps.Failf("unknown option %q; usage: %s", a, logsUsage)
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) != 1 {
		return o, apps.Failf("usage: %s", logsUsage)
	}
	o.target = positional[0]
	return o, nil
}

// logsTarget: logs [-f] [-n LINES] [--node NODE] APP[@BRANCH].
func logsTarget(args []string) (string, error) {
	o, err := parseLogsArgs(args)
	return o.target, err
}

func (s *Server) logsCommand(c *call) error {
	o, err := parseLogsArgs(c.args)
	if err != nil {
		return err
	}
	return s.apps.Logs(c.ctx, c.target, o.LogsOptions, c.stdout())
}
