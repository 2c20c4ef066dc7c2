package receiver

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/receiver/keystore"
)

const (
	releasesUsage = "releases APP[@BRANCH] [--json]"
	activateUsage = "activate APP[@BRANCH] vN|prev"
	logsUsage     = "logs APP[@BRANCH] [-n LINES] [-f] [--node NAME] [--process NAME]"
)

// target is the APP[@BRANCH] argument of the app commands.
type target struct {
	app, branch, instance string
}

func (t target) String() string { return t.app + "@" + t.branch }

// parseTarget validates APP[@BRANCH] (the branch defaults to main) before
// anything uses it.
func parseTarget(arg string) (target, error) {
	app, branch, hasBranch := strings.Cut(arg, "@")
	if !hasBranch {
		branch = "main"
	}
	if err := keystore.ValidAppName(app); err != nil {
		return target{}, fmt.Errorf("invalid app name %q: use lowercase letters, digits and dashes, starting with a letter", app)
	}
	if err := names.CheckBranch(branch); err != nil {
		return target{}, fmt.Errorf("invalid branch %q in %q: %w", branch, arg, err)
	}
	return target{app: app, branch: branch, instance: names.Instance(branch)}, nil
}

// appTarget parses and authorizes the target of an app command.
func (s *Server) appTarget(c *call, arg string) (target, error) {
	t, err := parseTarget(arg)
	if err != nil {
		return t, c.fail("%v", err)
	}
	if !c.key.CanAccessApp(t.app) {
		return t, c.fail("key %q may not manage app %q; ask an admin to grant it", c.key.Name, t.app)
	}
	return t, nil
}

// releasesTarget: releases [--json] APP[@BRANCH].
func releasesTarget(args []string) (string, error) {
	args = slices.DeleteFunc(slices.Clone(args[1:]), func(a string) bool { return a == "--json" })
	if len(args) != 1 {
		return "", userErrorf("usage: %s", releasesUsage)
	}
	return args[0], nil
}

func (s *Server) releasesCommand(c *call) error {
	asJSON := slices.Contains(c.args[1:], "--json")
	t := c.target
	recs, err := s.history.List(t.app, t.instance)
	if err != nil {
		c.log.Error().Err(err).Msg("reading release history")
		return c.fail("cannot read the release history of %s; tell the operator", t)
	}
	if len(recs) == 0 {
		return c.fail("%s has no releases; push the branch first", t)
	}
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return c.internal(err, "cannot read the node inventory")
	}
	onNodes := s.fleet.Releases(c.sess.Context(), targets, t.app, t.instance)

	type row struct {
		Number int       `json:"number"`
		Commit string    `json:"commit"`
		Pusher string    `json:"pusher"`
		Time   time.Time `json:"time"`
		Status string    `json:"status"`
		Live   bool      `json:"live"`
	}
	rows := make([]row, 0, len(recs))
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		status, live := releaseStatus(r.Number, onNodes)
		rows = append(rows, row{Number: r.Number, Commit: r.Commit, Pusher: r.Pusher, Time: r.Time, Status: status, Live: live})
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return exitStatus(1)
		}
	} else {
		tw := tabwriter.NewWriter(c.stdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RELEASE\tCOMMIT\tPUSHER\tTIME\tSTATUS")
		for _, r := range rows {
			fmt.Fprintf(tw, "v%d\t%.7s\t%s\t%s\t%s\n", r.Number, r.Commit, r.Pusher, r.Time.Format("2006-01-02 15:04"), r.Status)
		}
		tw.Flush()
	}
	for _, n := range onNodes {
		if n.Err != nil {
			fmt.Fprintf(c.stderr(), "gitreceive: %v\n", n.Err)
		}
	}
	return nil
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

func (s *Server) activateCommand(c *call) error {
	t := c.target
	ctx, out := c.sess.Context(), c.out
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return c.internal(err, "cannot read the node inventory")
	}

	n, err := s.activationTarget(c, t, targets, c.args[2])
	if err != nil {
		return c.fail("%v", err)
	}
	start := time.Now()
	out.Step("%s: activating v%d on %d node%s", t, n, len(targets), plural(len(targets)))
	say := func(node nodes.Node, line string) { nodeDetail(out, node.Name, "%s", line) }
	warnings, err := s.fleet.Activate(ctx, targets, t.app, t.instance, n, say, func(rep nodes.Report) {
		if rep.Err != nil {
			nodeDetail(out, rep.Node.Name, "failed  %.2fs", rep.Duration.Seconds())
			return
		}
		nodeDetail(out, rep.Node.Name, "ready  %.2fs", rep.Duration.Seconds())
	})
	c.log.Info().Str("app", t.app).Str("instance", t.instance).Int("release", n).Err(err).Msg("activate")
	if err != nil {
		out.Error("v%d was not activated: %v", n, err)
		out.Error("Nothing was changed: every node keeps its release.")
		return exitStatus(1)
	}
	for _, w := range warnings {
		out.Detail("%s", w)
	}
	out.Done("%s v%d is live on %d node%s (%.1fs)", t, n, len(targets), plural(len(targets)), time.Since(start).Seconds())
	return nil
}

// activationTarget turns vN or prev into a release number that exists.
func (s *Server) activationTarget(c *call, t target, targets []nodes.Node, which string) (int, error) {
	if which == "prev" {
		prev := 0
		for _, r := range s.fleet.Releases(c.sess.Context(), targets, t.app, t.instance) {
			switch {
			case r.Err != nil:
				return 0, r.Err
			case r.Previous == 0:
				return 0, fmt.Errorf("%s has no previous release on node %s", t, r.Node.Name)
			case prev != 0 && r.Previous != prev:
				return 0, fmt.Errorf("the nodes disagree on the previous release of %s (v%d, v%d); activate one by number", t, prev, r.Previous)
			}
			prev = r.Previous
		}
		return prev, nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(which, "v"))
	if err != nil || n < 1 || !strings.HasPrefix(which, "v") {
		return 0, fmt.Errorf("%q is not a release; give vN (see `releases %s`) or prev", which, t)
	}
	recs, err := s.history.List(t.app, t.instance)
	if err != nil {
		return 0, tellOperator(c.log, err, "cannot read the release history of %s", t)
	}
	if !slices.ContainsFunc(recs, func(r builder.Record) bool { return r.Number == n }) {
		return 0, fmt.Errorf("%s has no release v%d; see `releases %s`", t, n, t)
	}
	return n, nil
}

// logsOptions are the arguments of logs.
type logsOptions struct {
	lines  int
	follow bool
	node   string
	// process: a worker's or cron job's log instead of the app's.
	process string
	target  string // APP[@BRANCH]
}

// parseLogsArgs reads logs' arguments (args[0] is the name).
func parseLogsArgs(args []string) (logsOptions, error) {
	o := logsOptions{lines: 100}
	var positional []string
	args = args[1:]
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-f":
			o.follow = true
		case (a == "-n" || a == "--node" || a == "--process") && i+1 < len(args):
			i++
			if a == "--node" {
				o.node = args[i]
				continue
			}
			if a == "--process" {
				if !names.IsProcess(args[i]) {
					return o, userErrorf("--process %q is not a worker or cron job name (app.ini's worker.NAME or cron.NAME)", args[i])
				}
				o.process = args[i]
				continue
			}
			n, err := strconv.Atoi(args[i])
			if err != nil || n < 0 || n > 100000 {
				return o, userErrorf("-n takes a number of lines from 0 to 100000")
			}
			o.lines = n
		case strings.HasPrefix(a, "-"):
			return o, userErrorf("unknown option %q; usage: %s", a, logsUsage)
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) != 1 {
		return o, userErrorf("usage: %s", logsUsage)
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
	lines, follow, node, t := o.lines, o.follow, o.node, c.target
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return c.internal(err, "cannot read the node inventory")
	}
	if node != "" {
		if targets, err = onlyNode(c, targets, node); err != nil {
			return err
		}
	}
	out := &lockedWriter{w: c.stdout()}
	err = s.fleet.Logs(c.sess.Context(), targets, t.app, t.instance, o.process, lines, follow, func(n nodes.Node, line string) {
		out.printf("%s\n", nodeLine(n.Name, "%s", line))
	})
	if err != nil {
		return c.fail("%v", err)
	}
	return nil
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
