package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gitreceive/gitreceive/nodes/agentapi"
	"github.com/gitreceive/gitreceive/services"
)

// ServicesNode is the node that runs the apps' services: the one marked
// services = true, else the first target (the local node on a single box).
func (inv *Inventory) ServicesNode() (Node, error) {
	nodes, err := inv.Targets()
	if err != nil {
		return Node{}, err
	}
	for _, n := range nodes {
		if n.Services {
			return n, nil
		}
	}
	return nodes[0], nil
}

// ServiceAddress is where app nodes reach the services n runs.
func (n Node) ServiceAddress() string {
	if n.Local {
		return "127.0.0.1"
	}
	return n.Host
}

// ServiceSetup runs `service OP SERVICE [ARGS]` (install; client with the
// app's platform) on every node in parallel, with their agents brought up
// to date first; each line they print goes to say.
func (f *Fleet) ServiceSetup(ctx context.Context, nodes []Node, op, service string, say func(Node, string), args ...string) error {
	return f.onNodes(nodes, say, func(n Node, w io.Writer) error {
		c, err := f.serviceConn(ctx, n)
		if err != nil {
			return err
		}
		req := agentapi.Service{Op: op, Service: service}
		if len(args) > 0 {
			req.Platform = args[0] // client's: whose client packages
		}
		if err := c.agent(ctx, nil, w, req.Argv()...); err != nil {
			return fmt.Errorf("node %s: %s %s: %w", n.Name, op, service, err)
		}
		return nil
	})
}

// ServiceProvision provisions the instance's service on every node in
// parallel; each line they print goes to say.
func (f *Fleet) ServiceProvision(ctx context.Context, nodes []Node, service, app, instance string, cred services.Credentials, say func(Node, string)) error {
	return f.onNodes(nodes, say, func(n Node, w io.Writer) error {
		return f.ServiceCall(ctx, n, "provision", service, app, instance, cred, nil, w)
	})
}

// onNodes runs fn for every node (bounded), each with a writer passing its
// lines to say, and joins their errors.
func (f *Fleet) onNodes(nodes []Node, say func(Node, string), fn func(Node, io.Writer) error) error {
	errs := make([]error, len(nodes))
	forEachNode(nodes, func(i int, n Node) {
		w := &lineWriter{line: func(l string) { say(n, strings.TrimSpace(l)) }}
		errs[i] = fn(n, w)
		w.Flush()
	})
	return errors.Join(errs...)
}

// ServiceCall runs `service OP SERVICE APP INSTANCE` on n: the credentials
// go first on stdin (never in a command line), then in (restore's backup),
// and what the agent prints goes to out (backup's dump, provision's lines).
func (f *Fleet) ServiceCall(ctx context.Context, n Node, op, service, app, instance string, cred services.Credentials, in io.Reader, out io.Writer) error {
	c, err := f.serviceConn(ctx, n)
	if err != nil {
		return err
	}
	line, err := json.Marshal(cred)
	if err != nil {
		return err
	}
	stdin := io.Reader(bytes.NewReader(append(line, '\n')))
	if in != nil {
		stdin = io.MultiReader(stdin, in)
	}
	if out == nil {
		out = io.Discard
	}
	req := agentapi.Service{Op: op, Service: service, Target: agentapi.At(app, instance)}
	if svc, ok := services.Lookup(service); ok && op == "provision" && svc.Where() == services.OnServicesNode {
		// Provisioning installs the server first: it binds where app
		// nodes reach n and to loopback, never every interface.
		req.Listen = []string{n.ServiceAddress()}
	}
	if err := c.agent(ctx, stdin, out, req.Argv()...); err != nil {
		return fmt.Errorf("node %s: %s of %s: %w", n.Name, op, service, err)
	}
	return nil
}

// serviceConn connects to n with an agent that knows this version's
// services.
func (f *Fleet) serviceConn(ctx context.Context, n Node) (*conn, error) {
	version, err := localVersion(ctx, f.AgentBin)
	if err != nil {
		return nil, err
	}
	c, err := f.connect(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	if _, err := ensureAgent(ctx, c, version); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return c, nil
}
