package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/hooks/termsafe"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/services"
)

const (
	runUsage         = "run [--env NAME=VALUE]... APP[@BRANCH] [--node NAME | --all-nodes] [--raw] [--env NAME=VALUE]... SCRIPT [ARG...]"
	appsUsage        = "apps [--json]"
	destroyUsage     = "destroy APP[@BRANCH] --confirm APP [--with-data]"
	configUsage      = "config APP[@BRANCH]"
	configSetUsage   = "config:set APP[@BRANCH] KEY=VALUE..."
	configUnsetUsage = "config:unset APP[@BRANCH] KEY..."
	disableUsage     = "disable APP[@BRANCH]"
	enableUsage      = "enable APP[@BRANCH]"
)

// runCommand is Silver Lining's `silver run`: a script of the live release
// on one node (the services node unless told otherwise), as the app runs.
// runTarget: run [--env NAME=VALUE]... APP[@BRANCH] ...
func runTarget(args []string) (string, error) {
	_, args, err := parseRunOptions(args[1:], true)
	if err != nil || len(args) == 0 {
		return "", userErrorf("%s", usageError(err, runUsage))
	}
	return args[0], nil
}

func (s *Server) runCommand(c *call) error {
	o, args, err := parseRunOptions(c.args[1:], true)
	if err != nil {
		return err
	}
	t := c.target
	// Options go before or after APP.
	o, args, err = o.parseMore(args[1:])
	if err != nil {
		return c.fail("%s", usageError(err, runUsage))
	}
	node, all, raw := o.node, o.all, o.raw
	if len(args) == 0 || (all && node != "") {
		return c.fail("usage: %s", runUsage)
	}
	if _, _, isPty := c.sess.Pty(); raw && isPty {
		return c.fail("--raw is for output without a terminal (piped to a file or program); with ssh -t the output is raw already: drop -t or --raw")
	}
	if raw && all {
		return c.fail("--raw passes one node's output unchanged, but --all-nodes labels every line with its node: give --node NAME instead of --all-nodes")
	}
	targets, err := s.runNodes(c, node, all)
	if err != nil {
		return err
	}

	var ctx context.Context = c.sess.Context()
	var term *nodes.Terminal
	if ptyReq, winCh, isPty := c.sess.Pty(); isPty {
		resize := make(chan [2]int)
		goSafe(c.log, "terminal resize", func() {
			defer close(resize)
			for w := range winCh {
				select {
				case resize <- [2]int{w.Width, w.Height}:
				case <-ctx.Done():
					return
				}
			}
		})
		term = &nodes.Terminal{Term: ptyReq.Term, Width: ptyReq.Window.Width, Height: ptyReq.Window.Height, Resize: resize}
	} else if s.cfg.RunTimeout > 0 {
		// A script nobody watches must end; an interactive one is the
		// person's to stop.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.RunTimeout)
		defer cancel()
	}
	// Names, never values: --env values are often secrets.
	c.log.Info().Str("app", t.app).Str("instance", t.instance).Str("script", args[0]).Int("args", len(args)-1).Strs("env", o.envNames()).Msg("run")
	code := 0
	for _, n := range targets {
		stdout, stderr, flush := runOutput(c, n, all, raw, term != nil)
		got, err := s.fleet.RunScript(ctx, n, t.app, t.instance, args[0], args[1:], o.env, c.sess, stdout, stderr, term)
		flush()
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return c.fail("%s ran longer than run_timeout (%s) and was stopped", args[0], s.cfg.RunTimeout)
		case ctx.Err() != nil:
			return exitStatus(130)
		case err != nil:
			return c.fail("%v", err)
		}
		if code == 0 {
			code = got
		}
	}
	return exitWith(code)
}

// runNodes are the nodes `run` runs on: --node NODE, every node
// (--all-nodes), or by default the services node, where the app's
// databases are closest.
func (s *Server) runNodes(c *call, node string, all bool) ([]nodes.Node, error) {
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return nil, c.internal(err, "cannot read the node inventory")
	}
	switch {
	case node != "":
		return onlyNode(c, targets, node)
	case !all:
		n, err := s.fleet.Inventory.ServicesNode()
		if err != nil {
			return nil, c.internal(err, "cannot read the node inventory")
		}
		return []nodes.Node{n}, nil
	}
	return targets, nil
}

// onlyNode is the node named by --node, among targets.
func onlyNode(c *call, targets []nodes.Node, name string) ([]nodes.Node, error) {
	i := slices.IndexFunc(targets, func(n nodes.Node) bool { return n.Name == name })
	if i < 0 {
		return nil, c.fail("there is no node %q; see `nodes list`", name)
	}
	return targets[i : i+1], nil
}

// runOutput is where a script's stdout and stderr go on node n, and what
// to call once it ended. On a terminal (ssh -t) the bytes pass unchanged:
// the person is using the script interactively, as with ssh itself.
// Without one, what the script prints is shown escaped (hooks/termsafe),
// like all app output, as it streams, because it usually lands on the
// caller's terminal too; --raw leaves stdout unchanged for piping (a
// dump to a file), while stderr, which stays on the terminal, is still
// escaped. --all-nodes labels every line with its node (nodes.LineWriter,
// which also cuts lines longer than 64 KiB).
func runOutput(c *call, n nodes.Node, all, raw, tty bool) (stdout, stderr io.Writer, flush func()) {
	if all {
		// One writer per stream: the node's stdout and stderr arrive on
		// two goroutines, and each needs its own partial line.
		out := &lockedWriter{w: c.stdout()}
		label := func(line string) { out.printf("%s\n", nodeLine(n.Name, "%s", line)) }
		o, e := nodes.NewLineWriter(label, tty), nodes.NewLineWriter(label, tty)
		return o, e, func() { o.Flush(); e.Flush() }
	}
	if tty {
		return c.stdout(), c.stderr(), func() {}
	}
	e := termsafe.NewWriter(c.stderr())
	if raw {
		return c.stdout(), e, func() { _ = e.Flush() }
	}
	o := termsafe.NewWriter(c.stdout())
	return o, e, func() { _ = o.Flush(); _ = e.Flush() }
}

// appInstances lists the instances of app that have releases.
func (s *Server) appInstances(app string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.cfg.releasesDir(), app))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// appsRow is one instance (or one never-deployed app) in `apps`.
type appsRow struct {
	App      string   `json:"app"`
	Instance string   `json:"instance"`
	Location string   `json:"location"`
	Live     string   `json:"live"`
	Nodes    int      `json:"nodes"`
	Services []string `json:"services"`
	Files    string   `json:"files,omitempty"`
	Branch   string   `json:"branch,omitempty"`
	Deployed string   `json:"last_deploy,omitempty"` // RFC 3339, UTC
	Pusher   string   `json:"pusher,omitempty"`
}

func (s *Server) appsCommand(c *call) error {
	asJSON := false
	switch {
	case len(c.args) == 2 && c.args[1] == "--json":
		asJSON = true
	case len(c.args) != 1:
		return c.fail("usage: %s", appsUsage)
	}
	rows, err := s.appsRows(c)
	if err != nil {
		return err
	}
	if asJSON {
		if rows == nil {
			rows = []appsRow{}
		}
		enc := json.NewEncoder(c.stdout())
		enc.SetIndent("", "  ")
		if enc.Encode(rows) != nil {
			return exitStatus(1)
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tBRANCH\tLOCATION\tLIVE\tNODES\tLAST DEPLOY\tSERVICES")
	for _, r := range rows {
		services := strings.Join(r.Services, ",")
		if r.Files != "" {
			services += " (files: per node)"
		}
		deployed := r.Deployed
		if deployed != "" {
			deployed += " by " + r.Pusher
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.App, r.Branch, r.Location, r.Live, r.Nodes, deployed, services)
	}
	tw.Flush()
	return nil
}

// appsRows are the rows of `apps`: the instances of every app c's key may
// manage, in the order of the repositories.
func (s *Server) appsRows(c *call) ([]appsRow, error) {
	entries, err := os.ReadDir(s.cfg.reposDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, c.internal(err, "cannot list the apps")
	}
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return nil, c.internal(err, "cannot read the node inventory")
	}
	var rows []appsRow
	for _, e := range entries {
		app, isRepo := strings.CutSuffix(e.Name(), ".git")
		if !isRepo || !c.key.CanAccessApp(app) {
			continue
		}
		instances, err := s.appInstances(app)
		if err != nil {
			return nil, c.internal(err, "cannot read the releases of %s", app)
		}
		if len(instances) == 0 {
			rows = append(rows, appsRow{App: app, Live: "never deployed", Services: []string{}})
		}
		for _, inst := range instances {
			rows = append(rows, s.appsInstanceRow(c.sess.Context(), targets, app, inst))
		}
	}
	return rows, nil
}

// appsInstanceRow is what `apps` says of one instance.
func (s *Server) appsInstanceRow(ctx context.Context, targets []nodes.Node, app, inst string) appsRow {
	row := appsRow{App: app, Instance: inst, Services: []string{}}
	if spec, ok, err := s.lastSpec(app, inst); err == nil && ok {
		row.Location = "http://" + spec.Locations[0].String()
		row.Services = append(row.Services, spec.Services...)
	}
	if last, _, ok, err := s.history.Last(app, inst); err == nil && ok {
		row.Branch, row.Deployed, row.Pusher = last.Branch, last.Time.UTC().Format(time.RFC3339), last.Pusher
	}
	live := map[int]int{}
	for _, r := range s.fleet.Releases(ctx, targets, app, inst) {
		if r.Err == nil && r.Current > 0 {
			live[r.Current]++
			row.Nodes++
		}
	}
	var parts []string
	for n, count := range live {
		parts = append(parts, fmt.Sprintf("v%d on %d", n, count))
	}
	sort.Strings(parts)
	row.Live = strings.Join(parts, ", ")
	if row.Live == "" {
		row.Live = "none"
	}
	if slices.Contains(row.Services, "files") && len(targets) > 1 {
		row.Files = "per node: each node has its own files directory"
	}
	return row
}

// destroyCommand removes an instance (APP@BRANCH) or a whole app (APP:
// every instance, its repository, its history and config) from every node
// and the receiver.
// destroyArgs are destroy's arguments without --with-data.
func destroyArgs(args []string) []string {
	return slices.DeleteFunc(slices.Clone(args[1:]), func(a string) bool { return a == "--with-data" })
}

// destroyTarget: destroy APP[@BRANCH] --confirm APP [--with-data].
func destroyTarget(args []string) (string, error) {
	args = destroyArgs(args)
	if len(args) != 3 || args[1] != "--confirm" {
		return "", userErrorf("usage: %s", destroyUsage)
	}
	return args[0], nil
}

func (s *Server) destroyCommand(c *call) error {
	withData := slices.Contains(c.args[1:], "--with-data")
	args := destroyArgs(c.args)
	t := c.target
	whole := !strings.Contains(args[0], "@")
	ctx, out := c.sess.Context(), c.out
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return c.internal(err, "cannot read the node inventory")
	}
	instances := []string{t.instance}
	if whole {
		if instances, err = s.appInstances(t.app); err != nil {
			return c.internal(err, "cannot read the releases of %s", t.app)
		}
	}
	for _, inst := range instances {
		if err := s.destroyInstance(ctx, c.log, out, targets, t.app, inst, withData); err != nil {
			return c.fail("%v", err)
		}
	}
	if whole {
		for _, p := range []string{filepath.Join(s.cfg.releasesDir(), t.app), s.repos.path(t.app)} {
			if err := os.RemoveAll(p); err != nil {
				return c.internal(err, "cannot remove %s", p)
			}
		}
		s.config.remove(t.app, "")
		if withData {
			s.creds.remove(t.app, "")
		}
		out.Done("%s is destroyed: its instances, repository, history and config are gone", t.app)
	} else {
		out.Done("%s is destroyed on every node; the repository keeps branch %s", t, t.branch)
	}
	c.log.Info().Str("app", t.app).Strs("instances", instances).Bool("whole", whole).Msg("destroyed")
	return nil
}

// destroyInstance removes an instance from every node, with its history
// and config, and with withData its services' data; without, it says what
// data is kept (a push of the same branch gets it back).
func (s *Server) destroyInstance(ctx context.Context, log zerolog.Logger, out *hooks.Progress, targets []nodes.Node, app, instance string, withData bool) error {
	out.Step("Destroying %s/%s on %d node%s", app, instance, len(targets), plural(len(targets)))
	if err := s.fleet.Destroy(ctx, targets, app, instance); err != nil {
		out.Error("%v", err)
		return fmt.Errorf("%s/%s was not destroyed everywhere; fix the node and run destroy again", app, instance)
	}
	if err := os.RemoveAll(filepath.Join(s.cfg.releasesDir(), app, instance)); err != nil {
		return tellOperator(log, err, "cannot remove the history of %s/%s", app, instance)
	}
	if err := s.config.remove(app, instance); err != nil {
		return tellOperator(log, err, "cannot remove the config of %s/%s", app, instance)
	}
	creds, err := s.creds.get(app, instance)
	if err != nil {
		return tellOperator(log, err, "cannot read the services of %s/%s", app, instance)
	}
	names := slices.Sorted(maps.Keys(creds))
	if len(names) > 0 && !withData {
		out.Detail("kept the data of %s (destroy --with-data removes it)", strings.Join(names, ", "))
		return nil
	}
	for _, name := range names {
		svc, ok := services.Lookup(name)
		if !ok {
			continue
		}
		if err := s.removeServiceData(ctx, app, instance, svc, creds[name], true); err != nil {
			log.Warn().Err(err).Str("service", name).Msg("removing service data")
			out.Error("%v", err)
			return fmt.Errorf("the %s data of %s/%s was not removed; fix the node and run destroy again", name, app, instance)
		}
		out.Detail("%-13s data and user removed", name)
	}
	return nil
}

func (s *Server) configCommand(c *call) error {
	t := c.target
	operator, err := s.config.get(t.app, t.instance)
	if err != nil {
		return c.internal(err, "cannot read the config of %s", t)
	}
	spec, _, err := s.lastSpec(t.app, t.instance)
	if err != nil {
		return c.internal(err, "cannot read the newest release of %s", t)
	}
	// Names and where they come from; values are never shown.
	fromOperator := map[string]bool{}
	for k := range operator {
		fromOperator["CONFIG_"+envKey(k)] = true
	}
	var names []string
	for k := range spec.Env {
		if strings.HasPrefix(k, "CONFIG_") {
			names = append(names, k)
		}
	}
	for k := range fromOperator {
		if _, ok := spec.Env[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(c.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tSET BY")
	for _, k := range names {
		by := "app.ini"
		if fromOperator[k] {
			by = "config:set"
		}
		fmt.Fprintf(tw, "%s\t%s\n", k, by)
	}
	tw.Flush()
	return nil
}

// configSetTarget: config:set APP[@BRANCH] KEY=VALUE... The values are
// checked before the app's lock is waited for.
func configSetTarget(args []string) (string, error) {
	if len(args) < 3 {
		return "", userErrorf("usage: %s", configSetUsage)
	}
	if _, err := parseAssignments(args[2:]); err != nil {
		return "", userErrorf("%v; usage: %s", err, configSetUsage)
	}
	return args[1], nil
}

func (s *Server) configSetCommand(c *call) error {
	values, err := parseAssignments(c.args[2:])
	if err != nil {
		return err
	}
	return s.changeConfig(c, func(m map[string]string) []string {
		var keys []string
		for k, v := range values {
			m[k] = v
			keys = append(keys, k)
		}
		return keys
	})
}

// configUnsetTarget: config:unset APP[@BRANCH] KEY... The keys are
// checked before the app's lock is waited for.
func configUnsetTarget(args []string) (string, error) {
	if len(args) < 3 {
		return "", userErrorf("usage: %s", configUnsetUsage)
	}
	for _, k := range args[2:] {
		if !configKey.MatchString(k) {
			return "", userErrorf("%q is not a config key; usage: %s", k, configUnsetUsage)
		}
	}
	return args[1], nil
}

func (s *Server) configUnsetCommand(c *call) error {
	return s.changeConfig(c, func(m map[string]string) []string {
		for _, k := range c.args[2:] {
			delete(m, k)
		}
		return c.args[2:]
	})
}

// changeConfig applies change to the instance's operator config and
// restarts the instance with it: a new release of the same commit, through
// the normal health-checked two-phase switch. If that fails, the change is
// taken back.
func (s *Server) changeConfig(c *call, change func(map[string]string) []string) error {
	t := c.target
	ctx, out := c.sess.Context(), c.out
	last, previous, ok, err := s.history.Last(t.app, t.instance)
	if err != nil || !ok {
		return c.fail("%s has no release to restart; push it first", t)
	}
	before, err := s.config.get(t.app, t.instance)
	if err != nil {
		return c.internal(err, "cannot read the config of %s", t)
	}
	var keys []string
	if err := s.config.update(t.app, t.instance, func(m map[string]string) error { keys = change(m); return nil }); err != nil {
		return c.internal(err, "cannot save the config of %s", t)
	}
	sort.Strings(keys)
	// Names only: the values are secrets as often as not.
	out.Step("%s: config %s changed by %s; restarting as v%d", t, strings.Join(keys, ", "), c.key.Name, last.Number+1)
	start := time.Now()
	err = s.restart(ctx, c, t, last, previous, out, start)
	if err != nil {
		_ = s.config.update(t.app, t.instance, func(m map[string]string) error {
			clear(m)
			maps.Copy(m, before)
			return nil
		})
		out.Error("%v", err)
		out.Error("The config change was taken back; every node keeps its release.")
		return exitStatus(1)
	}
	return nil
}

// restart deploys the commit of the instance's newest release again as a
// new release: the same files (nothing is uploaded), a new spec.
func (s *Server) restart(ctx context.Context, c *call, t target, last builder.Record, previous builder.Manifest, out *hooks.Progress, start time.Time) error {
	r, err := builder.Build(ctx, builder.Input{
		Git:       builder.Git{Dir: s.repos.path(t.app)},
		App:       t.app,
		Instance:  t.instance,
		Branch:    last.Branch,
		Commit:    last.Commit,
		Pusher:    c.key.Name,
		Number:    last.Number + 1,
		Previous:  previous,
		SizeLimit: s.cfg.ReleaseSizeLimit,
	}, out)
	if err != nil {
		return err
	}
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return tellOperator(c.log, err, "cannot read the node inventory")
	}
	_, err = s.goLive(ctx, c.log, []*builder.Release{r}, targets, out, start, "")
	return err
}

func (s *Server) disableCommand(c *call) error { return s.setDisabled(c, true) }
func (s *Server) enableCommand(c *call) error  { return s.setDisabled(c, false) }

func (s *Server) setDisabled(c *call, disabled bool) error {
	t := c.target
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return c.internal(err, "cannot read the node inventory")
	}
	if err := s.fleet.SetDisabled(c.sess.Context(), targets, t.app, t.instance, disabled); err != nil {
		return c.fail("%v", err)
	}
	c.log.Info().Str("app", t.app).Str("instance", t.instance).Bool("disabled", disabled).Msg("disable")
	if disabled {
		fmt.Fprintf(c.stdout(), "%s is disabled: it answers 503 on %d node%s until `enable %s`\n", t, len(targets), plural(len(targets)), t)
	} else {
		fmt.Fprintf(c.stdout(), "%s is enabled again on %d node%s\n", t, len(targets), plural(len(targets)))
	}
	return nil
}

// runOptions are run's options, given before or after APP[@BRANCH].
type runOptions struct {
	node     string
	all, raw bool
	env      []string // NAME=VALUE, checked
}

// parseRunOptions reads options from the front of args and returns the
// rest. Before APP only --env is taken (beforeApp).
func parseRunOptions(args []string, beforeApp bool) (runOptions, []string, error) {
	return runOptions{}.parse(args, beforeApp)
}

func (o runOptions) parseMore(args []string) (runOptions, []string, error) {
	return o.parse(args, false)
}

func (o runOptions) parse(args []string, beforeApp bool) (runOptions, []string, error) {
	for len(args) > 0 && strings.HasPrefix(args[0], "--") {
		switch {
		case args[0] == "--env" && len(args) > 1:
			if err := names.CheckEnvAssignment(args[1]); err != nil {
				return o, nil, err
			}
			o.env, args = append(o.env, args[1]), args[2:]
		case beforeApp:
			return o, nil, fmt.Errorf("%s goes after APP", args[0])
		case args[0] == "--all-nodes":
			o.all, args = true, args[1:]
		case args[0] == "--raw":
			o.raw, args = true, args[1:]
		case args[0] == "--node" && len(args) > 1:
			o.node, args = args[1], args[2:]
		default:
			return o, nil, fmt.Errorf("unknown option %q", args[0])
		}
	}
	return o, args, nil
}

// envNames are the names of o.env, for the log.
func (o runOptions) envNames() []string {
	out := make([]string, len(o.env))
	for i, kv := range o.env {
		out[i], _, _ = strings.Cut(kv, "=")
	}
	return out
}

// usageError is err's sentence followed by the usage, or the usage alone.
func usageError(err error, usage string) string {
	if err == nil {
		return "usage: " + usage
	}
	return err.Error() + "; usage: " + usage
}
