package receiver

import (
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/guard"
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

// runTarget: run [--env NAME=VALUE]... APP[@BRANCH] ... run declares no
// flags: its own parser stops at SCRIPT, whose arguments are the script's.
func runTarget(a argv) (string, error) {
	_, args, err := parseRunOptions(a.words[1:], true)
	if err != nil || len(args) == 0 {
		return "", apps.Failf("%s", usageError(err, runUsage))
	}
	return args[0], nil
}

// runCommand is Silver Lining's `silver run`: a script of the live release
// on one node (the services node unless told otherwise), as the app runs.
func (s *Server) runCommand(c *call) error {
	o, args, err := parseRunOptions(c.args[1:], true)
	if err != nil {
		return err
	}
	// Options go before or after APP.
	o, args, err = o.parseMore(args[1:])
	if err != nil {
		return c.fail("%s", usageError(err, runUsage))
	}
	if len(args) == 0 || (o.All && o.Node != "") {
		return c.fail("usage: %s", runUsage)
	}
	ptyReq, winCh, isPty := c.sess.Pty()
	if o.Raw && isPty {
		return c.fail("--raw is for output without a terminal (piped to a file or program); with ssh -t the output is raw already: drop -t or --raw")
	}
	if o.Raw && o.All {
		return c.fail("--raw passes one node's output unchanged, but --all-nodes labels every line with its node: give --node NAME instead of --all-nodes")
	}
	req := o.RunRequest
	req.Script, req.Args = args[0], args[1:]
	req.Stdin, req.Stdout, req.Stderr = c.sess, c.stdout(), c.stderr()
	if isPty {
		resize := make(chan [2]int)
		guard.Go(c.log, "terminal resize", func() {
			defer close(resize)
			for w := range winCh {
				select {
				case resize <- [2]int{w.Width, w.Height}:
				case <-c.ctx.Done():
					return
				}
			}
		})
		req.Term = &nodes.Terminal{Term: ptyReq.Term, Width: ptyReq.Window.Width, Height: ptyReq.Window.Height, Resize: resize}
	}
	return s.apps.Run(c.ctx, c.target, req)
}

// runOptions are run's options, given before or after APP[@BRANCH].
type runOptions struct{ apps.RunRequest }

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
			o.Env, args = append(o.Env, args[1]), args[2:]
		case beforeApp:
			return o, nil, fmt.Errorf("%s goes after APP", args[0])
		case args[0] == "--all-nodes":
			o.All, args = true, args[1:]
		case args[0] == "--raw":
			o.Raw, args = true, args[1:]
		case args[0] == "--node" && len(args) > 1:
			o.Node, args = args[1], args[2:]
		default:
			return o, nil, fmt.Errorf("unknown option %q", args[0])
		}
	}
	return o, args, nil
}

// usageError is err's sentence followed by the usage, or the usage alone.
func usageError(err error, usage string) string {
	if err == nil {
		return "usage: " + usage
	}
	return err.Error() + "; usage: " + usage
}

func (s *Server) appsCommand(c *call) error {
	if err := noWords(c.argv, appsUsage); err != nil {
		return err
	}
	rows, err := s.apps.List(c.ctx, c.key.CanAccessApp)
	if err != nil {
		return err
	}
	if c.argv.bool("json") {
		return printJSON(c, rows)
	}
	tw := tabwriter.NewWriter(c.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tBRANCH\tLOCATION\tLIVE\tNODES\tLAST DEPLOY\tSERVICES\tWORKERS")
	for _, r := range rows {
		services := strings.Join(r.Services, ",")
		if r.Files != "" {
			services += " (files: per node)"
		}
		deployed := r.Deployed
		if deployed != "" {
			deployed += " by " + r.Pusher
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.App, r.Branch, r.Location, r.Live, r.Nodes, deployed, services, workersCell(r))
	}
	tw.Flush()
	return nil
}

// workersCell is what `apps` says of an instance's workers: those in a
// crash loop and their nodes, and the nodes not reached ("-": nothing).
func workersCell(r apps.AppRow) string {
	var names []string
	where := map[string][]string{}
	for _, c := range r.CrashLoops {
		if where[c.Worker] == nil {
			names = append(names, c.Worker)
		}
		where[c.Worker] = append(where[c.Worker], c.Node)
	}
	var parts []string
	for _, name := range names {
		parts = append(parts, "crash loop: "+name+" on "+strings.Join(where[name], ", "))
	}
	if len(r.Unreached) > 0 {
		parts = append(parts, "not reached: "+strings.Join(r.Unreached, ", "))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

// destroyFlags declares destroy's options.
func destroyFlags(fs *flag.FlagSet) {
	confirmFlag(fs)
	fs.Bool("with-data", false, "remove the services' data too")
}

// destroyCommand removes an instance (APP@BRANCH) or a whole app (APP).
func (s *Server) destroyCommand(c *call) error {
	whole := !strings.Contains(c.args[1], "@")
	return s.apps.Destroy(c.ctx, c.target, whole, c.argv.bool("with-data"), c.out)
}

func (s *Server) configCommand(c *call) error {
	vars, err := s.apps.ConfigVars(c.target)
	if err != nil {
		return err
	}
	// Names and where they come from; values are never shown.
	tw := tabwriter.NewWriter(c.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tSET BY")
	for _, v := range vars {
		fmt.Fprintf(tw, "%s\t%s\n", v.Name, v.SetBy)
	}
	tw.Flush()
	return nil
}

// configSetTarget: config:set APP[@BRANCH] KEY=VALUE... The values are
// checked before the app's lock is waited for.
func configSetTarget(a argv) (string, error) {
	args := a.words
	if len(args) < 3 {
		return "", apps.Failf("usage: %s", configSetUsage)
	}
	if _, err := apps.ParseAssignments(args[2:]); err != nil {
		return "", apps.Failf("%v; usage: %s", err, configSetUsage)
	}
	return args[1], nil
}

func (s *Server) configSetCommand(c *call) error {
	values, err := apps.ParseAssignments(c.args[2:])
	if err != nil {
		return err
	}
	return s.apps.SetConfig(c.ctx, c.target, c.key.Name, values, c.out)
}

// configUnsetTarget: config:unset APP[@BRANCH] KEY... The keys are
// checked before the app's lock is waited for.
func configUnsetTarget(a argv) (string, error) {
	args := a.words
	if len(args) < 3 {
		return "", apps.Failf("usage: %s", configUnsetUsage)
	}
	for _, k := range args[2:] {
		if !apps.IsConfigKey(k) {
			return "", apps.Failf("%q is not a config key; usage: %s", k, configUnsetUsage)
		}
	}
	return args[1], nil
}

func (s *Server) configUnsetCommand(c *call) error {
	return s.apps.UnsetConfig(c.ctx, c.target, c.key.Name, c.args[2:], c.out)
}

func (s *Server) disableCommand(c *call) error { return s.setDisabled(c, true) }
func (s *Server) enableCommand(c *call) error  { return s.setDisabled(c, false) }

func (s *Server) setDisabled(c *call, disabled bool) error {
	t := c.target
	n, err := s.apps.SetDisabled(c.ctx, t, disabled)
	if err != nil {
		return err
	}
	if disabled {
		fmt.Fprintf(c.stdout(), "%s is disabled: it answers 503 on %d node%s until `enable %s`\n", t, n, apps.Plural(n), t)
	} else {
		fmt.Fprintf(c.stdout(), "%s is enabled again on %d node%s\n", t, n, apps.Plural(n))
	}
	return nil
}
