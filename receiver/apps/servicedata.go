package apps

import (
	"context"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/receiver/backuparchive"
	"github.com/gitreceive/gitreceive/services"
)

// serviceNodes are the nodes svc keeps the instance's data on.
func (a *Apps) serviceNodes(svc services.Service) ([]nodes.Node, error) {
	if svc.Where() == services.OnAppNodes {
		return a.fleet.Inventory.Targets()
	}
	n, err := a.fleet.Inventory.ServicesNode()
	return []nodes.Node{n}, err
}

// instanceServices are the services the instance has data in: those it
// has credentials for, in name order.
func (a *Apps) instanceServices(t Target) (map[string]services.Credentials, []string, error) {
	creds, err := a.creds.get(t.App, t.Instance)
	if err != nil {
		return nil, nil, Internal(err, "cannot read the services of %s", t)
	}
	return creds, slices.Sorted(maps.Keys(creds)), nil
}

// Backup writes a tar of every service's data of the instance to w
// (receiver/backuparchive).
func (a *Apps) Backup(ctx context.Context, t Target, w io.Writer, out *hooks.Progress) error {
	log := logger(ctx)
	creds, names, err := a.instanceServices(t)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return Failf("%s has no services to back up", t)
	}
	tmp, err := os.MkdirTemp(a.cfg.RunDir(), "backup-")
	if err != nil {
		return Internal(err, "cannot make room for the backup")
	}
	defer os.RemoveAll(tmp)
	// Each dump goes to a file first: tar needs its size before its bytes.
	for _, name := range names {
		svc, ok := services.Lookup(name)
		if !ok {
			return Failf("service %s is not one this receiver provides", name)
		}
		where, err := a.serviceNodes(svc)
		if err != nil {
			return Internal(err, "cannot read the node inventory")
		}
		dump := backuparchive.DumpPath(tmp, name)
		f, err := os.OpenFile(dump, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return Internal(err, "cannot make room for the backup")
		}
		err = a.fleet.ServiceCall(ctx, where[0], "backup", name, t.App, t.Instance, creds[name], nil, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			log.Warn().Err(err).Str("service", name).Msg("backup failed")
			return Failf("backup of %s failed: %v", name, err)
		}
		st, _ := os.Stat(dump)
		from := ""
		if svc.Where() == services.OnAppNodes {
			from = " (from node " + where[0].Name + "; each node keeps its own)"
		}
		out.Detail("%-13s %s%s", name, hooks.Size(st.Size()), from)
	}
	m := backuparchive.Manifest{App: t.App, Instance: t.Instance, Created: time.Now().UTC(), Services: names}
	if err := backuparchive.Write(w, m, tmp); err != nil {
		return Failf("writing the backup: %v", err)
	}
	out.Done("backup of %s: %s", t, strings.Join(names, ", "))
	log.Info().Str("app", t.App).Str("instance", t.Instance).Strs("services", names).Msg("backup")
	return nil
}

// Restore replaces the instance's service data with a backup read from r,
// all of it checked before anything is restored; each service restores
// with the instance's own rights on its node.
func (a *Apps) Restore(ctx context.Context, t Target, r io.Reader, out *hooks.Progress) error {
	log := logger(ctx)
	creds, _, err := a.instanceServices(t)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(a.cfg.RunDir(), "restore-")
	if err != nil {
		return Internal(err, "cannot make room for the backup")
	}
	defer os.RemoveAll(tmp)
	m, names, err := backuparchive.Read(r, tmp, func(name string) bool { _, ok := creds[name]; return ok })
	if err != nil {
		return Failf("%v; nothing was restored", err)
	}
	out.Step("Restoring %s from the backup of %s/%s made %s", t, m.App, m.Instance, m.Created.Format(time.RFC3339))
	for i, name := range names {
		svc, _ := services.Lookup(name)
		where, err := a.serviceNodes(svc)
		if err != nil {
			return Internal(err, "cannot read the node inventory")
		}
		for _, n := range where {
			f, err := os.Open(backuparchive.DumpPath(tmp, name))
			if err != nil {
				return Internal(err, "cannot read the backup back")
			}
			err = a.fleet.ServiceCall(ctx, n, "restore", name, t.App, t.Instance, creds[name], f, nil)
			f.Close()
			if err != nil {
				log.Warn().Err(err).Str("service", name).Msg("restore failed")
				return Failf("restoring %s failed: %v; restored before it: %s", name, err, strings.Join(names[:i], ", "))
			}
		}
		out.Detail("%-13s restored", name)
	}
	out.Done("%s restored: %s", t, strings.Join(names, ", "))
	log.Info().Str("app", t.App).Str("instance", t.Instance).Strs("services", names).Msg("restored")
	return nil
}

// Clear empties one service of the instance, or removes it entirely (data
// and user) when app.ini no longer asks for it.
func (a *Apps) Clear(ctx context.Context, t Target, name string, out *hooks.Progress) error {
	log := logger(ctx)
	creds, _, err := a.instanceServices(t)
	if err != nil {
		return err
	}
	cred, has := creds[name]
	svc, known := services.Lookup(name)
	if !has || !known {
		return Failf("%s has no service %q", t, name)
	}
	spec, _, err := a.lastSpec(t.App, t.Instance)
	if err != nil {
		return Internal(err, "cannot read the releases of %s", t)
	}
	// A service app.ini no longer asks for goes entirely: nothing would
	// provision it again.
	drop := !slices.Contains(spec.Services, name)
	if err := a.removeServiceData(ctx, t.App, t.Instance, svc, cred, drop); err != nil {
		log.Warn().Err(err).Str("service", name).Msg("clear failed")
		return Failf("clearing %s failed: %v", name, err)
	}
	if drop {
		out.Done("%s of %s is removed (its data and user): app.ini no longer asks for it", name, t)
	} else {
		out.Done("%s of %s is empty", name, t)
	}
	log.Info().Str("app", t.App).Str("instance", t.Instance).Str("service", name).Bool("dropped", drop).Msg("service cleared")
	return nil
}

// removeServiceData clears the instance's data of svc everywhere it is
// kept, or with drop destroys it and forgets its credentials.
func (a *Apps) removeServiceData(ctx context.Context, app, instance string, svc services.Service, cred services.Credentials, drop bool) error {
	where, err := a.serviceNodes(svc)
	if err != nil {
		return err
	}
	op := "clear"
	if drop {
		op = "destroy"
	}
	for _, n := range where {
		if err := a.fleet.ServiceCall(ctx, n, op, svc.Name(), app, instance, cred, nil, nil); err != nil {
			return err
		}
	}
	if !drop {
		return nil
	}
	return a.creds.update(app, instance, func(m map[string]services.Credentials) error {
		delete(m, svc.Name())
		return nil
	})
}

// Lock takes the app's lock for a command of user that does what,
// telling out whom it waits for; release frees it.
func (a *Apps) Lock(ctx context.Context, t Target, user, what string, out *hooks.Progress) (release func(), err error) {
	release, err = a.locks.acquire(ctx, t.App, &lockHolder{user: user, branch: t.Branch, commit: what}, a.cfg.LockTimeout, lockWaitInterval, func(h *lockHolder) {
		out.Step("waiting for %s to finish", h)
	})
	if err != nil {
		return nil, Failf("%s is busy: %v", t.App, err)
	}
	return release, nil
}
