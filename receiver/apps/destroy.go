package apps

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/services"
)

// Destroy removes an instance from every node and the receiver, or with
// whole the app: every instance, its repository, its history and config.
// Without withData the services' data (and credentials) are kept, so that a
// push of the same branch gets them back.
func (a *Apps) Destroy(ctx context.Context, t Target, whole, withData bool, out *hooks.Progress) error {
	log := logger(ctx)
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return Internal(err, "cannot read the node inventory")
	}
	instances := []string{t.Instance}
	if whole {
		if instances, err = a.appInstances(t.App); err != nil {
			return Internal(err, "cannot read the releases of %s", t.App)
		}
	}
	for _, inst := range instances {
		if err := a.destroyInstance(ctx, out, targets, t.App, inst, withData); err != nil {
			return Failf("%v", err)
		}
	}
	if whole {
		for _, p := range []string{filepath.Join(a.cfg.releasesDir(), t.App), a.repos.Path(t.App)} {
			if err := os.RemoveAll(p); err != nil {
				return Internal(err, "cannot remove %s", p)
			}
		}
		a.config.remove(t.App, "")
		if withData {
			a.creds.remove(t.App, "")
		}
		out.Done("%s is destroyed: its instances, repository, history and config are gone", t.App)
	} else {
		out.Done("%s is destroyed on every node; the repository keeps branch %s", t, t.Branch)
	}
	log.Info().Str("app", t.App).Strs("instances", instances).Bool("whole", whole).Msg("destroyed")
	return nil
}

// destroyInstance removes an instance from every node, with its history
// and config, and with withData its services' data; without, it says what
// data is kept (a push of the same branch gets it back).
func (a *Apps) destroyInstance(ctx context.Context, out *hooks.Progress, targets []nodes.Node, app, instance string, withData bool) error {
	log := logger(ctx)
	out.Step("Destroying %s/%s on %d node%s", app, instance, len(targets), Plural(len(targets)))
	if err := a.fleet.Destroy(ctx, targets, app, instance); err != nil {
		out.Error("%v", err)
		return fmt.Errorf("%s/%s was not destroyed everywhere; fix the node and run destroy again", app, instance)
	}
	if err := os.RemoveAll(filepath.Join(a.cfg.releasesDir(), app, instance)); err != nil {
		return tellOperator(log, err, "cannot remove the history of %s/%s", app, instance)
	}
	if err := a.config.remove(app, instance); err != nil {
		return tellOperator(log, err, "cannot remove the config of %s/%s", app, instance)
	}
	creds, err := a.creds.get(app, instance)
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
		if err := a.removeServiceData(ctx, app, instance, svc, creds[name], true); err != nil {
			log.Warn().Err(err).Str("service", name).Msg("removing service data")
			out.Error("%v", err)
			return fmt.Errorf("the %s data of %s/%s was not removed; fix the node and run destroy again", name, app, instance)
		}
		out.Detail("%-13s data and user removed", name)
	}
	return nil
}
