package apps

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/services"
)

// credentialStore keeps each instance's service credentials (0600),
// generated once: DATA/services/APP/INSTANCE.json.
type credentialStore = instanceStore[services.Credentials]

// nodeHost is how the receiver names paths on the nodes (CONFIG_FILES).
var nodeHost = services.Host{DataDir: agent.SystemRuntime().DataDir}

// credentials returns the instance's credentials for each of names,
// making those it does not have yet (a redis database number no other
// instance has).
func (a *Apps) credentials(app, instance string, names []string) (map[string]services.Credentials, error) {
	var out map[string]services.Credentials
	err := a.creds.update(app, instance, func(m map[string]services.Credentials) error {
		for _, name := range names {
			if _, ok := m[name]; ok {
				continue
			}
			c, err := services.NewCredentials(services.Instance{App: app, Name: instance})
			if err != nil {
				return err
			}
			if name == "redis" {
				if c.Database, err = a.freeRedisDatabase(m); err != nil {
					return err
				}
			}
			m[name] = c
		}
		out = maps.Clone(m)
		return nil
	})
	return out, err
}

// freeRedisDatabase is the lowest redis database number (from 1: 0 is
// where a client lands before it selects) no instance has; mine are the
// credentials being updated, not yet on disk.
func (a *Apps) freeRedisDatabase(mine map[string]services.Credentials) (int, error) {
	all, err := a.creds.all()
	if err != nil {
		return 0, err
	}
	used := map[int]bool{}
	for _, m := range append(all, mine) {
		if c, ok := m["redis"]; ok {
			used[c.Database] = true
		}
	}
	for n := 1; n <= services.MaxRedisDatabase; n++ {
		if !used[n] {
			return n, nil
		}
	}
	return 0, fmt.Errorf("every redis database (1..%d) is taken", services.MaxRedisDatabase)
}

// parseAllowedServices reads the `services` setting: "all", "none", or
// service names separated by commas or spaces.
func parseAllowedServices(value string) ([]string, error) {
	switch strings.TrimSpace(value) {
	case "all":
		return nil, nil
	case "none":
		return []string{}, nil
	}
	names := []string{}
	for _, n := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' }) {
		if _, ok := services.Lookup(n); !ok {
			return nil, fmt.Errorf("%q is not a service; write all, none, or some of %s", n, strings.Join(services.Names(), ", "))
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, nil
}

// checkAllowedServices refuses, before anything is provisioned, a deploy
// asking for a service the receiver's `services` setting leaves out.
func (a *Apps) checkAllowedServices(built []*builder.Release, specs []agent.Spec) error {
	if a.cfg.AllowedServices == nil {
		return nil
	}
	for i := range built {
		for _, name := range specs[i].Services {
			if !slices.Contains(a.cfg.AllowedServices, name) {
				return fmt.Errorf("app.ini: service.%s: this receiver does not provide %s (its operator allows: %s); remove service.%s, or ask the operator to add it to the services setting",
					name, name, globList(a.cfg.AllowedServices), name)
			}
		}
	}
	return nil
}

// checkAllowedPackages refuses, before anything is provisioned, a package
// of app.ini's packages = that packages_allowed does not cover: packages
// are installed on the nodes as root.
func (a *Apps) checkAllowedPackages(built []*builder.Release) error {
	allowed := a.cfg.PackagesAllowed
	if allowed == nil {
		allowed = DefaultPackagesAllowed
	}
	for _, r := range built {
		for _, p := range r.Config.Packages {
			if !slices.ContainsFunc(allowed, func(g string) bool { ok, _ := path.Match(g, p); return ok }) {
				return fmt.Errorf("app.ini: packages: %s is not a package this receiver installs for apps (packages_allowed = %s); remove it, vendor what it provides into the app, or ask the operator to add it to packages_allowed in gitreceive.ini",
					p, globList(allowed))
			}
		}
	}
	return nil
}

// installPackages installs what of r's packages = is missing on every app
// node before the release starts there; a package that does not exist or
// fails to install on any node stops the deploy.
func (a *Apps) installPackages(ctx context.Context, r *builder.Release, targets []nodes.Node, out *hooks.Progress) error {
	log := logger(ctx)
	if len(r.Config.Packages) == 0 {
		return nil
	}
	out.Step("Packages: %s", strings.Join(r.Config.Packages, " "))
	err := a.fleet.InstallPackages(ctx, targets, r.Config.Packages, func(n nodes.Node, line string) {
		out.Detail("%s  %s", n.Name, line)
	})
	if err != nil {
		log.Warn().Err(err).Msg("installing packages failed")
		return fmt.Errorf("app.ini's packages could not be installed: %w; nothing was deployed", err)
	}
	return nil
}

// provision gives r's instance every service its app.ini asks for before
// any node starts the release: credentials made once and kept, the server
// installed and the instance's database made on the services node (its
// directory on every app node), client packages on the app nodes, and the
// connection details added to spec.Env. Every step is idempotent, so it
// runs on every deploy and mends what a rebuilt node lacks.
func (a *Apps) provision(ctx context.Context, r *builder.Release, spec *agent.Spec, targets []nodes.Node, out *hooks.Progress) error {
	log := logger(ctx)
	stored, err := a.creds.get(r.App, r.Instance)
	if err != nil {
		log.Error().Err(err).Msg("reading service credentials")
		return fmt.Errorf("cannot read the services of %s; tell the operator", r.App)
	}
	for _, name := range slices.Sorted(maps.Keys(stored)) {
		if !slices.Contains(spec.Services, name) {
			out.Detail("warning: %s is no longer in app.ini; its data is kept. To remove it: ssh <receiver> clear %s %s --confirm %s",
				name, instanceTarget(r.App, r.Branch), name, r.App)
		}
	}
	if len(spec.Services) == 0 {
		return nil
	}
	creds, err := a.credentials(r.App, r.Instance, spec.Services)
	if err != nil {
		log.Error().Err(err).Msg("making service credentials")
		return fmt.Errorf("cannot make the service credentials of %s; tell the operator", r.App)
	}
	servicesNode, err := a.fleet.Inventory.ServicesNode()
	if err != nil {
		log.Error().Err(err).Msg("reading the node inventory")
		return fmt.Errorf("cannot read the node inventory; tell the operator")
	}
	out.Step("Services")
	inst := services.Instance{App: r.App, Name: r.Instance}
	for _, name := range spec.Services {
		svc, ok := services.Lookup(name)
		if !ok {
			return fmt.Errorf("service %s is not one this receiver provides", name)
		}
		where := []nodes.Node{servicesNode}
		if svc.Where() == services.OnAppNodes {
			where = targets
		}
		// Lines name the node when the service is on several.
		say := func(on []nodes.Node) func(nodes.Node, string) {
			return func(n nodes.Node, line string) {
				line = strings.TrimPrefix(line, name+": ")
				if len(on) > 1 {
					line = n.Name + "  " + line
				}
				out.Detail("%-13s %s", name, line)
			}
		}
		if svc.Where() == services.OnServicesNode && len(svc.ClientPackages(string(r.Config.Platform))) > 0 {
			if err := a.fleet.ServiceSetup(ctx, targets, "client", name, say(targets), string(r.Config.Platform)); err != nil {
				log.Warn().Err(err).Str("service", name).Msg("client packages")
				return fmt.Errorf("%s: installing its client packages failed: %w", name, err)
			}
		}
		if err := a.fleet.ServiceProvision(ctx, where, name, r.App, r.Instance, creds[name], say(where)); err != nil {
			log.Warn().Err(err).Str("service", name).Msg("provisioning failed")
			return fmt.Errorf("%s could not be provisioned: %w; nothing was deployed", name, err)
		}
		maps.Copy(spec.Env, svc.Env(inst, creds[name], servicesNode.ServiceAddress(), nodeHost))
	}
	log.Info().Strs("services", spec.Services).Str("services_node", servicesNode.Name).Msg("services provisioned")
	return nil
}

// instanceTarget is how commands name a branch's instance: APP for
// production, APP@BRANCH otherwise.
func instanceTarget(app, branch string) string {
	if isProductionBranch(branch) {
		return app
	}
	return app + "@" + branch
}
