package receiver

import (
	"encoding/json"
	"flag"
	"fmt"
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

func (s *Server) releasesCommand(c *call) error {
	rows, unreached, err := s.apps.Releases(c.ctx, c.target)
	if err != nil {
		return err
	}
	if c.argv.bool("json") {
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

// logsFlags declares logs' options.
func logsFlags(fs *flag.FlagSet) {
	lines := linesValue(100)
	fs.Var(&lines, "n", "lines of each log")
	fs.Bool("f", false, "follow")
	fs.String("node", "", "one node")
}

func (s *Server) logsCommand(c *call) error {
	o := apps.LogsOptions{Lines: c.argv.int("n"), Follow: c.argv.bool("f"), Node: c.argv.string("node")}
	return s.apps.Logs(c.ctx, c.target, o, c.stdout())
}
