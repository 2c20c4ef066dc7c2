package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/services"
)

// serviceOps are the verbs of `service`, with whether they act on one
// instance (APP INSTANCE follow, and stdin starts with its credentials).
var serviceOps = map[string]bool{
	"install": false, "client": false,
	"provision": true, "backup": true, "restore": true, "clear": true, "destroy": true,
}

// serviceVerb is `service OP SERVICE [APP INSTANCE] [--listen=ADDR]`. The
// credentials come as stdin's first line (JSON), never in the arguments,
// which other users of the node can see; restore's backup follows them.
// --listen is the address app nodes reach this node at (its inventory
// address): servers bind there and to loopback, never to every interface.
func serviceVerb(ctx context.Context, root string, args []string, stdin io.Reader, stdout io.Writer) error {
	args, listen, err := services.ListenFlag(ctx, args)
	if err != nil {
		return err
	}
	if len(args) < 2 {
		return errors.New(usage)
	}
	op, name := args[0], args[1]
	perInstance, ok := serviceOps[op]
	platform := "python" // client's: whose client packages (`service client NAME [PLATFORM]`)
	if op == "client" && len(args) == 3 && (args[2] == "python" || args[2] == "php") {
		platform, args = args[2], args[:2]
	}
	if !ok || (perInstance && len(args) != 4) || (!perInstance && len(args) != 2) {
		return errors.New(usage)
	}
	svc, ok := services.Lookup(name)
	if !ok {
		return fmt.Errorf("no service %q here; this agent knows %v", name, services.Names())
	}
	if root != DefaultRoot {
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
			t, err := instanceUser(rt, inst.App, inst.Name, true)
			return t.name, err
		}}
	switch op {
	case "install":
		return svc.Install(ctx, h)
	case "client":
		return services.EnsurePackages(ctx, stdout, svc.ClientPackages(platform))
	}
	if !names.IsApp(args[2]) || !names.IsInstance(args[3]) {
		return fmt.Errorf("invalid app or instance name %q %q", args[2], args[3])
	}
	inst := services.Instance{App: args[2], Name: args[3]}
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
