package apps

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/gitreceive/gitreceive/hooks/termsafe"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/rs/zerolog"
)

// RunRequest is what `run` runs: Silver Lining's `silver run`, a script of
// the live release on one node (the services node unless told otherwise),
// as the app runs.
type RunRequest struct {
	Script string
	Args   []string
	Env    []string // NAME=VALUE, checked by names.CheckEnvAssignment
	Node   string   // --node ("": the services node)
	All    bool     // --all-nodes: every node, each line labelled
	Raw    bool     // --raw: stdout unescaped
	// Term is the client's terminal (ssh -t), nil without one.
	Term *nodes.Terminal

	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Run runs the script on the nodes req names and returns its exit status
// (the first non-zero one) as an ExitStatus.
func (a *Apps) Run(ctx context.Context, t Target, req RunRequest) error {
	targets, err := a.runNodes(req.Node, req.All)
	if err != nil {
		return err
	}
	if req.Term == nil && a.cfg.RunTimeout > 0 {
		// A script nobody watches must end; an interactive one is the
		// person's to stop.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.cfg.RunTimeout)
		defer cancel()
	}
	// Names, never values: --env values are often secrets.
	zerolog.Ctx(ctx).Info().Str("app", t.App).Str("instance", t.Instance).Str("script", req.Script).Int("args", len(req.Args)).Strs("env", envNames(req.Env)).Msg("run")
	code := 0
	for _, n := range targets {
		stdout, stderr, flush := runOutput(req, n)
		got, err := a.fleet.RunScript(ctx, n, t.App, t.Instance, req.Script, req.Args, req.Env, req.Stdin, stdout, stderr, req.Term)
		flush()
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return Failf("%s ran longer than run_timeout (%s) and was stopped", req.Script, a.cfg.RunTimeout)
		case ctx.Err() != nil:
			return ExitStatus(130)
		case err != nil:
			return Failf("%v", err)
		}
		if code == 0 {
			code = got
		}
	}
	return ExitWith(code)
}

// envNames are the names of NAME=VALUE assignments, for the log.
func envNames(env []string) []string {
	out := make([]string, len(env))
	for i, kv := range env {
		out[i], _, _ = strings.Cut(kv, "=")
	}
	return out
}

// runNodes are the nodes `run` runs on: --node NODE, every node
// (--all-nodes), or by default the services node, where the app's
// databases are closest.
func (a *Apps) runNodes(node string, all bool) ([]nodes.Node, error) {
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return nil, Internal(err, "cannot read the node inventory")
	}
	switch {
	case node != "":
		return onlyNode(targets, node)
	case !all:
		n, err := a.fleet.Inventory.ServicesNode()
		if err != nil {
			return nil, Internal(err, "cannot read the node inventory")
		}
		return []nodes.Node{n}, nil
	}
	return targets, nil
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
func runOutput(req RunRequest, n nodes.Node) (stdout, stderr io.Writer, flush func()) {
	tty := req.Term != nil
	if req.All {
		// One writer per stream: the node's stdout and stderr arrive on
		// two goroutines, and each needs its own partial line.
		out := &lockedWriter{w: req.Stdout}
		label := func(line string) { out.printf("%s\n", nodeLine(n.Name, "%s", line)) }
		o, e := nodes.NewLineWriter(label, tty), nodes.NewLineWriter(label, tty)
		return o, e, func() { o.Flush(); e.Flush() }
	}
	if tty {
		return req.Stdout, req.Stderr, func() {}
	}
	e := termsafe.NewWriter(req.Stderr)
	if req.Raw {
		return req.Stdout, e, func() { _ = e.Flush() }
	}
	o := termsafe.NewWriter(req.Stdout)
	return o, e, func() { _ = o.Flush(); _ = e.Flush() }
}
