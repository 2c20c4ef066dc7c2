package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// Activate makes release n of app's instance live again without uploading
// it (a rollback): phase 1 starts it on every node from the spec the node
// kept and health-checks it, phase 2 is Switch. Undoing never removes the
// release: it was there before. It returns the switches' warnings
// (Prepared.Warnings).
func (f *Fleet) Activate(ctx context.Context, nodes []Node, app, instance string, n int, say func(Node, string), ready func(Report)) ([]string, error) {
	r := Release{App: app, Instance: instance, Number: n}
	p := &Prepared{release: r, nodes: nodes, deploys: make([]nodeDeploy, len(nodes)), existing: true}
	err := f.phase1(ctx, p, ready, func(d *nodeDeploy) (Report, error) {
		cur, err := releasesOn(ctx, d.conn, app, instance)
		if err != nil {
			return Report{}, err
		}
		d.prev = cur.Current
		return Report{}, start(ctx, d.conn, r, true, func(line string) { say(d.conn.node, line) })
	})
	if err != nil {
		return nil, err
	}
	if err := f.Switch(ctx, p); err != nil {
		return nil, err
	}
	return p.Warnings(), nil
}

// InstanceReleases is what one node holds of an instance.
type InstanceReleases struct {
	Node Node
	Err  error
	agent.Releases
}

// Releases asks every node (in parallel, bounded) which releases of the
// instance it holds; a node that cannot answer has Err set.
func (f *Fleet) Releases(ctx context.Context, nodes []Node, app, instance string) []InstanceReleases {
	out := make([]InstanceReleases, len(nodes))
	forEachNode(nodes, func(i int, n Node) {
		c, err := f.connect(ctx, n)
		if err == nil {
			out[i], err = releasesOn(ctx, c, app, instance)
		}
		out[i].Node, out[i].Err = n, err
	})
	return out
}

func releasesOn(ctx context.Context, c *conn, app, instance string) (InstanceReleases, error) {
	var out bytes.Buffer
	var ir InstanceReleases
	if err := c.agent(ctx, nil, &out, agentapi.Releases{Target: agentapi.At(app, instance)}.Argv()...); err != nil {
		return ir, fmt.Errorf("node %s: %w", c.node.Name, err)
	}
	if err := json.Unmarshal(out.Bytes(), &ir.Releases); err != nil {
		return ir, fmt.Errorf("node %s: reading its releases: %w", c.node.Name, err)
	}
	return ir, nil
}

// Logs streams the last lines of the instance's logs (process: of that
// worker or cron job only) from every node (in parallel), and with follow
// keeps streaming until ctx ends. Each line goes to say with its node.
func (f *Fleet) Logs(ctx context.Context, nodes []Node, app, instance, process string, lines int, follow bool, say func(Node, string)) error {
	args := agentapi.Logs{Target: agentapi.At(app, instance), Lines: lines, Follow: follow, Process: process}.Argv()
	errs := make([]error, len(nodes))
	forEachNodeUnbounded(nodes, func(i int, n Node) {
		c, err := f.connect(ctx, n)
		if err == nil {
			w := &lineWriter{line: func(line string) { say(n, line) }}
			err = c.agent(ctx, nil, w, args...)
			w.Flush()
		}
		if err != nil && ctx.Err() == nil {
			errs[i] = fmt.Errorf("node %s: %w", n.Name, err)
		}
	})
	return errors.Join(errs...)
}

// Destroy removes the instance from every node: route, vassals, releases,
// env, secret and logs. Every node is tried; the error names those that
// failed.
func (f *Fleet) Destroy(ctx context.Context, nodes []Node, app, instance string) error {
	return f.onEveryNode(ctx, nodes, agentapi.Destroy{Target: agentapi.At(app, instance)})
}

// SetDisabled makes the instance answer 503 on every node (or serve again).
func (f *Fleet) SetDisabled(ctx context.Context, nodes []Node, app, instance string, disabled bool) error {
	var req agentapi.Request = agentapi.Enable{Target: agentapi.At(app, instance)}
	if disabled {
		req = agentapi.Disable{Target: agentapi.At(app, instance)}
	}
	return f.onEveryNode(ctx, nodes, req)
}

// onEveryNode runs the agent's request on every node in parallel.
func (f *Fleet) onEveryNode(ctx context.Context, nodes []Node, req agentapi.Request) error {
	return f.onEveryNodeIn(ctx, nodes, func() []byte { return nil }, req)
}
