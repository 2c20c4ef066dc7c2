package apps

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/nodes"
)

// The daemon keeps each instance's singletons, its cron jobs and workers of
// nodes = one, on one healthy node (DESIGN.md decision 11): a deploy gives
// them to the first node by name (Spec.Singletons); when that node is gone
// from the instance or fails its check, watchSingletons moves them to the
// first healthy one, and tells the others they do not hold them. It never
// moves them off a healthy node.

// watchSingletons checks the singletons' nodes every cron_check until ctx
// ends.
func (a *Apps) watchSingletons(ctx context.Context) {
	every := a.cfg.CronCheck
	if every <= 0 {
		every = DefaultCronCheck
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.checkSingletons(ctx)
		}
	}
}

// checkSingletons moves the singletons of every instance whose holder is
// gone or failing.
func (a *Apps) checkSingletons(ctx context.Context) {
	targets, err := a.fleet.Inventory.Targets()
	if err != nil || len(targets) == 0 {
		return
	}
	statuses := a.fleet.Check(ctx, targets)
	seen := map[[2]string]bool{}
	for _, st := range statuses {
		for _, in := range st.Instances {
			key := [2]string{in.App, in.Instance}
			if in.Release == 0 || seen[key] {
				continue
			}
			seen[key] = true
			a.placeSingletons(ctx, targets, statuses, in.App, in.Instance)
		}
	}
}

// placeSingletons gives app/instance's singletons to one healthy node, if
// it has any and their holder is not one.
func (a *Apps) placeSingletons(ctx context.Context, targets []nodes.Node, statuses []nodes.Status, app, instance string) {
	reports := a.fleet.Ps(ctx, targets, app, instance)
	chosen, move := singletonsPlacement(statuses, reports)
	if !move {
		return
	}
	log := a.log.With().Str("app", app).Str("instance", instance).Logger()
	for _, r := range reports {
		if r.Err != nil || r.Report.Release == 0 {
			continue
		}
		if err := a.fleet.SingletonsHold(ctx, r.Node, app, instance, r.Node.Name == chosen); err != nil {
			log.Warn().Err(err).Str("node", r.Node.Name).Msg("telling a node whether it holds the singletons (cron jobs, workers of nodes = one)")
		}
	}
	if chosen != "" {
		log.Info().Str("node", chosen).Msg("singletons (cron jobs, workers of nodes = one) moved")
	}
}

// singletonsPlacement says which node should hold an instance's singletons
// and whether the nodes must be told: the holder stays while it is healthy
// (of several holders, the one they were moved to, else the first by
// name); else the first healthy node by name that runs the instance takes
// them. A node is healthy when it passes its check and reports the
// instance live. Nothing moves while a node reports the instance disabled.
func singletonsPlacement(statuses []nodes.Status, reports []nodes.NodePs) (chosen string, move bool) {
	failing := map[string]bool{}
	for _, st := range statuses {
		if st.Err != nil {
			failing[st.Node.Name] = true
		}
	}
	var healthy, holders []string
	moved := ""
	has := false
	for _, r := range reports {
		if r.Err == nil && r.Report.Disabled {
			// Disabled (or being enabled node by node): no node runs
			// them now, and a node not yet enabled may hold them.
			return "", false
		}
		if r.Err != nil || failing[r.Node.Name] || r.Report.Release == 0 {
			continue
		}
		healthy = append(healthy, r.Node.Name)
		if len(r.Report.Cron) > 0 || len(r.Report.OneNodeWorkers) > 0 {
			has = true
		}
		if r.Report.Singletons {
			holders = append(holders, r.Node.Name)
			if r.Report.SingletonsMoved && (moved == "" || r.Node.Name < moved) {
				moved = r.Node.Name
			}
		}
	}
	if !has || len(healthy) == 0 {
		return "", false
	}
	slices.SortFunc(healthy, strings.Compare)
	slices.SortFunc(holders, strings.Compare)
	if len(holders) == 1 {
		return holders[0], false
	}
	if len(holders) > 1 {
		// The deploy's node came back after the jobs moved: they stay.
		if moved != "" {
			return moved, true
		}
		return holders[0], true
	}
	return healthy[0], true
}
