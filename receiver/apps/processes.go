package apps

import (
	"context"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/nodes"
)

// The operations on an instance's background processes (DESIGN.md
// decision 11): ps, ps:restart, cron:run.

// Ps asks every node what of the instance runs there: web vassal,
// workers, cron jobs.
func (a *Apps) Ps(ctx context.Context, t Target) ([]nodes.NodePs, error) {
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return nil, Internal(err, "cannot read the node inventory")
	}
	return a.fleet.Ps(ctx, targets, t.App, t.Instance), nil
}

// RestartWorkers restarts the instance's workers (only: those named) on
// every node, each with SIGTERM first; it returns the number of nodes.
func (a *Apps) RestartWorkers(ctx context.Context, t Target, only []string) (int, error) {
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return 0, Internal(err, "cannot read the node inventory")
	}
	zerolog.Ctx(ctx).Info().Str("app", t.App).Str("instance", t.Instance).Strs("names", only).Msg("ps:restart")
	if err := a.fleet.RestartWorkers(ctx, targets, t.App, t.Instance, only); err != nil {
		return 0, Failf("%v", err)
	}
	return len(targets), nil
}

// CronRun runs cron job name now on the node that holds it, its output
// streamed to w under the node's name.
func (a *Apps) CronRun(ctx context.Context, t Target, name string, w io.Writer) error {
	reports, err := a.Ps(ctx, t)
	if err != nil {
		return err
	}
	node, err := cronNode(reports, name)
	if err != nil {
		return Failf("%s: %v", t, err)
	}
	zerolog.Ctx(ctx).Info().Str("app", t.App).Str("instance", t.Instance).Str("job", name).Str("node", node.Name).Msg("cron:run")
	out := &lockedWriter{w: w}
	if err := a.fleet.CronRun(ctx, node, t.App, t.Instance, name, func(line string) {
		out.printf("%s\n", nodeLine(node.Name, "%s", line))
	}); err != nil {
		return Failf("%v", err)
	}
	return nil
}

// cronNode is the node that holds cron job name.
func cronNode(reports []nodes.NodePs, name string) (nodes.Node, error) {
	declared := false
	for _, r := range reports {
		for _, j := range r.Report.Cron {
			if j.Name == name {
				declared = true
				if j.Here {
					return r.Node, nil
				}
			}
		}
	}
	if declared {
		return nodes.Node{}, fmt.Errorf("no node runs cron job %s now (is the instance disabled, or its node down?); see `ps`", name)
	}
	return nodes.Node{}, fmt.Errorf("the live release has no cron job %s; see `ps`", name)
}
