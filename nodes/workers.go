package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// NodePs is one node's answer to Ps.
type NodePs struct {
	Node   Node
	Report agent.PsReport
	Err    error
}

// Ps asks every node (in parallel) what of the instance runs there: its
// web vassal, workers and cron jobs.
func (f *Fleet) Ps(ctx context.Context, nodes []Node, app, instance string) []NodePs {
	out := make([]NodePs, len(nodes))
	forEachNodeUnbounded(nodes, func(i int, n Node) {
		out[i].Node = n
		c, err := f.connect(ctx, n)
		if err == nil {
			var buf bytes.Buffer
			if err = c.agent(ctx, nil, &buf, agentapi.Ps{Target: agentapi.At(app, instance)}.Argv()...); err == nil {
				err = json.Unmarshal(buf.Bytes(), &out[i].Report)
			}
		}
		if err != nil {
			out[i].Err = fmt.Errorf("node %s: %w", n.Name, err)
		}
	})
	return out
}

// RestartWorkers restarts the instance's workers (names: those only) on
// every node that runs them.
func (f *Fleet) RestartWorkers(ctx context.Context, nodes []Node, app, instance string, names []string) error {
	return f.onEveryNode(ctx, nodes, agentapi.Restart{Target: agentapi.At(app, instance), Names: names})
}

// CronRun runs cron job name of the instance now on node n, each line of
// its output going to say.
func (f *Fleet) CronRun(ctx context.Context, n Node, app, instance, name string, say func(string)) error {
	c, err := f.connect(ctx, n)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	w := &lineWriter{line: say}
	err = c.agent(ctx, nil, w, agentapi.CronRun{Target: agentapi.At(app, instance), Name: name}.Argv()...)
	w.Flush()
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return nil
}

// SingletonsHold makes node n run the instance's singletons, its cron
// jobs and workers of nodes = one, (on) or not.
func (f *Fleet) SingletonsHold(ctx context.Context, n Node, app, instance string, on bool) error {
	return f.onEveryNode(ctx, []Node{n}, agentapi.SingletonsHold{Target: agentapi.At(app, instance), On: on})
}
