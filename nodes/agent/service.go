package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gitreceive/gitreceive/nodes/agentapi"
	"github.com/gitreceive/gitreceive/services"
)

// serviceVerb is `service OP SERVICE [APP INSTANCE] [--listen=ADDR]`. The
// credentials come as stdin's first line (JSON), never in the arguments,
// which other users of the node can see; restore's backup follows them.
// --listen is the address app nodes reach this node at (its inventory
// address): servers bind there and to loopback, never to every interface.
func serviceVerb(ctx context.Context, cl *call, r agentapi.Service) error {
	listenArgs := make([]string, len(r.Listen))
	for i, l := range r.Listen {
		listenArgs[i] = services.ListenArg(l)
	}
	_, listen, err := services.ListenFlag(ctx, listenArgs)
	if err != nil {
		return err
	}
	root, stdin, stdout, op, name := cl.root, cl.stdin, cl.stdout, r.Op, r.Service
	platform := "python" // client's: whose client packages (`service client NAME [PLATFORM]`)
	if r.Platform != "" {
		platform = r.Platform
	}
	svc, ok := services.Lookup(name)
	if !ok {
		return fmt.Errorf("no service %q here; this agent knows %v", name, services.Names())
	}
	if root != defaultRoot {
		// A node whose root is moved (tests, trying gitreceive out) does
		// not serve apps, so it sets up no servers either.
		if op == "provision" || op == "install" || op == "client" {
			fmt.Fprintf(stdout, "not set up: this node's root is moved (%s)\n", RootEnv)
			return nil
		}
		return fmt.Errorf("%s has no data on a node whose root is moved (%s)", name, RootEnv)
	}
	rt := SystemRuntime()
	h := services.Host{DataDir: rt.DataDir, NginxGroup: rt.NginxGroup, Listen: listen, Output: stdout,
		UserOf: func(inst services.Instance) (string, error) {
			t, err := rt.instance(inst.App, inst.Name).instanceUser(true)
			return t.name, err
		}}
	switch op {
	case "install":
		return svc.Install(ctx, h)
	case "client":
		return services.EnsurePackages(ctx, stdout, svc.ClientPackages(platform))
	}
	inst := services.Instance{App: r.Target.App, Name: r.Target.Instance}
	in := bufio.NewReader(stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return errors.New("stdin: expected the service's credentials as one JSON line")
	}
	var c services.Credentials
	if err := json.Unmarshal(line, &c); err != nil {
		return fmt.Errorf("stdin: reading the credentials: %w", err)
	}
	if err := c.Check(); err != nil {
		return err
	}
	switch op {
	case "provision":
		// Install first: it is quick when nothing is missing, and makes a
		// node that was rebuilt or rebooted serve the service again.
		if err := svc.Install(ctx, h); err != nil {
			return err
		}
		ready, err := svc.Provision(ctx, h, inst, c)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, ready)
		return nil
	case "backup":
		return svc.Backup(ctx, h, inst, c, stdout)
	case "restore":
		return svc.Restore(ctx, h, inst, c, in)
	case "clear":
		return svc.Clear(ctx, h, inst, c)
	default:
		return svc.Destroy(ctx, h, inst, c)
	}
}
