package apps

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

// The daemon keeps each instance's cron jobs on one healthy node (DESIGN.md
// decision 11): a deploy gives them to the first node by name
// (Spec.Singletons); when that node is gone from the instance or fails its
// check, watchCron moves them to the first healthy one, and tells the
// others they do not hold them. It never moves jobs off a healthy node.

// watchCron checks the cron nodes every cron_check until ctx ends.
func (a *Apps) watchCron(ctx context.Context) {
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
			a.checkCronNodes(ctx)
		}
	}
}

// checkCronNodes moves the cron jobs of every instance whose holder is
// gone or failing.
func (a *Apps) checkCronNodes(ctx context.Context) {
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
			a.placeCron(ctx, targets, statuses, in.App, in.Instance)
		}
	}
}

// placeCron gives app/instance's cron jobs to one healthy node, if they
// have any and their holder is not one.
func (a *Apps) placeCron(ctx context.Context, targets []nodes.Node, statuses []nodes.Status, app, instance string) {
	reports := a.fleet.Ps(ctx, targets, app, instance)
	chosen, move := cronPlacement(statuses, reports)
	if !move {
		return
	}
	log := a.log.With().Str("app", app).Str("instance", instance).Logger()
	for _, r := range reports {
		if r.Err != nil || r.Report.Release == 0 {
			continue
		}
		if err := a.fleet.CronHold(ctx, r.Node, app, instance, r.Node.Name == chosen); err != nil {
			log.Warn().Err(err).Str("node", r.Node.Name).Msg("telling a node whether it holds the cron jobs")
		}
	}
	if chosen != "" {
		log.Info().Str("node", chosen).Msg("cron jobs moved")
	}
}

// cronPlacement says which node should hold an instance's cron jobs and
// whether the nodes must be told: the holder stays while it is healthy
// (one of several holders, the first by name); else the first healthy
// node by name that runs the instance takes them. A node is healthy when
// it passes its check and reports the instance live.
func cronPlacement(statuses []nodes.Status, reports []nodes.NodePs) (chosen string, move bool) {
	failing := map[string]bool{}
	for _, st := range statuses {
		if st.Err != nil {
			failing[st.Node.Name] = true
		}
	}
	var healthy, holders []string
	moved := ""
	hasCron := false
	for _, r := range reports {
		if r.Err != nil || failing[r.Node.Name] || r.Report.Release == 0 || r.Report.Disabled {
			continue
		}
		healthy = append(healthy, r.Node.Name)
		if len(r.Report.Cron) > 0 {
			hasCron = true
		}
		if slices.ContainsFunc(r.Report.Cron, func(j agent.CronJobReport) bool { return j.Here }) {
			holders = append(holders, r.Node.Name)
			if r.Report.CronMoved && (moved == "" || r.Node.Name < moved) {
				moved = r.Node.Name
			}
		}
	}
	if !hasCron || len(healthy) == 0 {
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
