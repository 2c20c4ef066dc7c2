package apps

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/rs/zerolog"
)

// Release is one release of an instance in `releases`, newest first.
type Release struct {
	Number int       `json:"number"`
	Commit string    `json:"commit"`
	Pusher string    `json:"pusher"`
	Time   time.Time `json:"time"`
	Status string    `json:"status"`
	Live   bool      `json:"live"`
}

// Releases lists the instance's releases, newest first, with where each
// stands on the nodes; unreached are the nodes that did not answer.
func (a *Apps) Releases(ctx context.Context, t Target) (releases []Release, unreached []error, err error) {
	recs, err := a.history.List(t.App, t.Instance)
	if err != nil {
		return nil, nil, Internal(err, "cannot read the release history of %s", t)
	}
	if len(recs) == 0 {
		return nil, nil, Failf("%s has no releases; push the branch first", t)
	}
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return nil, nil, Internal(err, "cannot read the node inventory")
	}
	onNodes := a.fleet.Releases(ctx, targets, t.App, t.Instance)
	releases = make([]Release, 0, len(recs))
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		status, live := releaseStatus(r.Number, onNodes)
		releases = append(releases, Release{Number: r.Number, Commit: r.Commit, Pusher: r.Pusher, Time: r.Time, Status: status, Live: live})
	}
	for _, n := range onNodes {
		if n.Err != nil {
			unreached = append(unreached, n.Err)
		}
	}
	return releases, unreached, nil
}

// releaseStatus says where release n stands across the nodes: live,
// previous (at prev.HOST), on nodes (can be activated), or gone.
func releaseStatus(n int, onNodes []nodes.InstanceReleases) (string, bool) {
	var live, prev, present, reached int
	for _, r := range onNodes {
		if r.Err != nil {
			continue
		}
		reached++
		switch {
		case r.Current == n:
			live++
		case r.Previous == n:
			prev++
		}
		if slices.Contains(r.Present, n) {
			present++
		}
	}
	switch {
	case reached == 0:
		return "unknown (no node answered)", false
	case live == reached:
		return "live", true
	case live > 0:
		return fmt.Sprintf("live on %d of %d nodes", live, reached), false
	case prev == reached:
		return "previous (prev.HOST)", false
	case present == reached:
		return "on nodes", false
	case present > 0:
		return fmt.Sprintf("on %d of %d nodes", present, reached), false
	}
	return "removed from nodes", false
}

// Activate makes release which (vN or prev) of the instance live again on
// every node, health-checked, all or nothing (a rollback).
func (a *Apps) Activate(ctx context.Context, t Target, which string, out *hooks.Progress) error {
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return Internal(err, "cannot read the node inventory")
	}
	n, err := a.activationTarget(ctx, t, targets, which)
	if err != nil {
		return err
	}
	start := time.Now()
	out.Step("%s: activating v%d on %d node%s", t, n, len(targets), Plural(len(targets)))
	say := func(node nodes.Node, line string) { nodeDetail(out, node.Name, "%s", line) }
	warnings, err := a.fleet.Activate(ctx, targets, t.App, t.Instance, n, say, func(rep nodes.Report) {
		if rep.Err != nil {
			nodeDetail(out, rep.Node.Name, "failed  %.2fs", rep.Duration.Seconds())
			return
		}
		nodeDetail(out, rep.Node.Name, "ready  %.2fs", rep.Duration.Seconds())
	})
	zerolog.Ctx(ctx).Info().Str("app", t.App).Str("instance", t.Instance).Int("release", n).Err(err).Msg("activate")
	if err != nil {
		out.Error("v%d was not activated: %v", n, err)
		out.Error("Nothing was changed: every node keeps its release.")
		return ExitStatus(1)
	}
	for _, w := range warnings {
		out.Detail("%s", w)
	}
	out.Done("%s v%d is live on %d node%s (%.1fs)", t, n, len(targets), Plural(len(targets)), time.Since(start).Seconds())
	return nil
}

// activationTarget turns vN or prev into a release number that exists.
func (a *Apps) activationTarget(ctx context.Context, t Target, targets []nodes.Node, which string) (int, error) {
	if which == "prev" {
		prev := 0
		for _, r := range a.fleet.Releases(ctx, targets, t.App, t.Instance) {
			switch {
			case r.Err != nil:
				return 0, Failf("%v", r.Err)
			case r.Previous == 0:
				return 0, Failf("%s has no previous release on node %s", t, r.Node.Name)
			case prev != 0 && r.Previous != prev:
				return 0, Failf("the nodes disagree on the previous release of %s (v%d, v%d); activate one by number", t, prev, r.Previous)
			}
			prev = r.Previous
		}
		return prev, nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(which, "v"))
	if err != nil || n < 1 || !strings.HasPrefix(which, "v") {
		return 0, Failf("%q is not a release; give vN (see `releases %s`) or prev", which, t)
	}
	recs, err := a.history.List(t.App, t.Instance)
	if err != nil {
		return 0, Failf("%v", tellOperator(logger(ctx), err, "cannot read the release history of %s", t))
	}
	if !slices.ContainsFunc(recs, func(r builder.Record) bool { return r.Number == n }) {
		return 0, Failf("%s has no release v%d; see `releases %s`", t, n, t)
	}
	return n, nil
}

// LogsOptions are what `logs` shows: the last Lines of each log, Follow
// for more as they come, from one Node ("": every node).
type LogsOptions struct {
	Lines  int
	Follow bool
	Node   string
}

// Logs writes the instance's app, access and error logs from its nodes to
// w, each line prefixed with its node.
func (a *Apps) Logs(ctx context.Context, t Target, o LogsOptions, w io.Writer) error {
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return Internal(err, "cannot read the node inventory")
	}
	if o.Node != "" {
		if targets, err = onlyNode(targets, o.Node); err != nil {
			return err
		}
	}
	out := &lockedWriter{w: w}
	err = a.fleet.Logs(ctx, targets, t.App, t.Instance, o.Lines, o.Follow, func(n nodes.Node, line string) {
		out.printf("%s\n", nodeLine(n.Name, "%s", line))
	})
	if err != nil {
		return Failf("%v", err)
	}
	return nil
}

// onlyNode is the node named by --node, among targets.
func onlyNode(targets []nodes.Node, name string) ([]nodes.Node, error) {
	i := slices.IndexFunc(targets, func(n nodes.Node) bool { return n.Name == name })
	if i < 0 {
		return nil, Failf("there is no node %q; see `nodes list`", name)
	}
	return targets[i : i+1], nil
}

// lockedWriter lets nodes streaming in parallel write whole lines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, a...)
}
