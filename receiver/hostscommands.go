package receiver

import (
	"fmt"
	"text/tabwriter"
)

const (
	hostsUsage        = "hosts [--json]"
	hostsReleaseUsage = "hosts:release HOST"
)

func (s *Server) hostsCommand(c *call) error {
	if err := noWords(c.argv, hostsUsage); err != nil {
		return err
	}
	rows, err := s.apps.Hosts()
	if err != nil {
		return err
	}
	if c.argv.bool("json") {
		return printJSON(c, rows)
	}
	tw := tabwriter.NewWriter(c.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tAPP\tINSTANCE\tCLAIMED\tROUTED")
	for _, r := range rows {
		routed := "no"
		if r.Routed {
			routed = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Host, r.App, r.Instance, r.Claimed, routed)
	}
	tw.Flush()
	return nil
}

func (s *Server) hostsReleaseCommand(c *call) error {
	if len(c.args) != 2 {
		return c.fail("usage: %s", hostsReleaseUsage)
	}
	released, note, err := s.apps.ReleaseHost(c.ctx, c.args[1])
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintf(c.stderr(), "note: %s\n", note)
	}
	fmt.Fprintf(c.stdout(), "released %s (claimed by %s/%s)\n", released.Host, released.App, released.Instance)
	return nil
}
