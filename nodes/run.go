package nodes

import (
	"context"
	"io"

	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// Terminal is a client's PTY request, carried to the node so that `ssh -t
// silver run ...` gets a terminal there.
type Terminal struct {
	Term          string
	Width, Height int
	Resize        <-chan [2]int // later sizes: width, height
}

// RunScript runs a script in the live release of app's instance on node n
// (the agent's `run`: the app user, the app's environment), with the
// caller's streams flowing both ways and, with term, on a PTY. Ending ctx
// (the client left) stops it on the node. It returns the script's exit code;
// err is for not reaching the node or the agent.
func (f *Fleet) RunScript(ctx context.Context, n Node, app, instance, script string, args, env []string, stdin io.Reader, stdout, stderr io.Writer, term *Terminal) (int, error) {
	t := f.transportTo(n)
	// env goes in the command line only root on the node can see (/proc
	// is mounted hidepid there), never in a log.
	req := agentapi.Run{Target: agentapi.At(app, instance), TTY: term != nil, Env: env, Script: script, Args: args}
	argv := append([]string{t.agentBin(), "node"}, req.Argv()...)
	return t.interactive(ctx, stdin, stdout, stderr, term, argv)
}
