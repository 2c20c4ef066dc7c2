package receiver

import (
	"context"
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

const (
	backupUsage  = "backup APP[@BRANCH] > APP.tar"
	restoreUsage = "restore APP[@BRANCH] < APP.tar"
	clearUsage   = "clear APP[@BRANCH] SERVICE --confirm APP"
)

// serviceNodes are the nodes svc keeps the instance's data on.
func (s *Server) serviceNodes(svc services.Service) ([]nodes.Node, error) {
	if svc.Where() == services.OnAppNodes {
		return s.fleet.Inventory.Targets()
	}
	n, err := s.fleet.Inventory.ServicesNode()
	return []nodes.Node{n}, err
}

// instanceServices are the services the instance has data in: those it
// has credentials for, in name order.
func (s *Server) instanceServices(c *call, t target) (map[string]services.Credentials, []string, error) {
	creds, err := s.creds.get(t.app, t.instance)
	if err != nil {
		c.log.Error().Err(err).Msg("reading service credentials")
		return nil, nil, c.fail("cannot read the services of %s; tell the operator", t)
	}
	return creds, slices.Sorted(maps.Keys(creds)), nil
}

func (s *Server) backupCommand(c *call) error {
	t := c.target
	creds, names, err := s.instanceServices(c, t)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return c.fail("%s has no services to back up", t)
	}
	ctx := c.sess.Context()
	out := hooks.NewProgress(c.stderr())
	tmp, err := os.MkdirTemp(s.cfg.runDir(), "backup-")
	if err != nil {
		return c.internal(err, "cannot make room for the backup")
	}
	defer os.RemoveAll(tmp)
	// Each dump goes to a file first: tar needs its size before its bytes.
	for _, name := range names {
		svc, ok := services.Lookup(name)
		if !ok {
			return c.fail("service %s is not one this receiver provides", name)
		}
		where, err := s.serviceNodes(svc)
		if err != nil {
			return c.internal(err, "cannot read the node inventory")
		}
		dump := backuparchive.DumpPath(tmp, name)
		f, err := os.OpenFile(dump, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return c.internal(err, "cannot make room for the backup")
		}
		err = s.fleet.ServiceCall(ctx, where[0], "backup", name, t.app, t.instance, creds[name], nil, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			c.log.Warn().Err(err).Str("service", name).Msg("backup failed")
			return c.fail("backup of %s failed: %v", name, err)
		}
		st, _ := os.Stat(dump)
		from := ""
		if svc.Where() == services.OnAppNodes {
			from = " (from node " + where[0].Name + "; each node keeps its own)"
		}
		out.Detail("%-13s %s%s", name, hooks.Size(st.Size()), from)
	}
	m := backuparchive.Manifest{App: t.app, Instance: t.instance, Created: time.Now().UTC(), Services: names}
	if err := backuparchive.Write(c.stdout(), m, tmp); err != nil {
		return c.fail("writing the backup: %v", err)
	}
	out.Done("backup of %s: %s", t, strings.Join(names, ", "))
	c.log.Info().Str("app", t.app).Str("instance", t.instance).Strs("services", names).Msg("backup")
	return nil
}

func (s *Server) restoreCommand(c *call) error {
	t := c.target
	ctx, out := c.sess.Context(), c.out
	creds, _, err := s.instanceServices(c, t)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(s.cfg.runDir(), "restore-")
	if err != nil {
		return c.internal(err, "cannot make room for the backup")
	}
	defer os.RemoveAll(tmp)
	m, names, err := backuparchive.Read(c.sess, tmp, func(name string) bool { _, ok := creds[name]; return ok })
	if err != nil {
		return c.fail("%v; nothing was restored", err)
	}
	out.Step("Restoring %s from the backup of %s/%s made %s", t, m.App, m.Instance, m.Created.Format(time.RFC3339))
	for i, name := range names {
		svc, _ := services.Lookup(name)
		where, err := s.serviceNodes(svc)
		if err != nil {
			return c.internal(err, "cannot read the node inventory")
		}
		for _, n := range where {
			f, err := os.Open(backuparchive.DumpPath(tmp, name))
			if err != nil {
				return c.internal(err, "cannot read the backup back")
			}
			err = s.fleet.ServiceCall(ctx, n, "restore", name, t.app, t.instance, creds[name], f, nil)
			f.Close()
			if err != nil {
				c.log.Warn().Err(err).Str("service", name).Msg("restore failed")
				return c.fail("restoring %s failed: %v; restored before it: %s", name, err, strings.Join(names[:i], ", "))
			}
		}
		out.Detail("%-13s restored", name)
	}
	out.Done("%s restored: %s", t, strings.Join(names, ", "))
	c.log.Info().Str("app", t.app).Str("instance", t.instance).Strs("services", names).Msg("restored")
	return nil
}

func (s *Server) clearCommand(c *call) error {
	t := c.target
	name := c.args[2]
	ctx, out := c.sess.Context(), c.out
	creds, _, err := s.instanceServices(c, t)
	if err != nil {
		return err
	}
	cred, has := creds[name]
	svc, known := services.Lookup(name)
	if !has || !known {
		return c.fail("%s has no service %q", t, name)
	}
	spec, _, err := s.lastSpec(t.app, t.instance)
	if err != nil {
		return c.internal(err, "cannot read the releases of %s", t)
	}
	// A service app.ini no longer asks for goes entirely: nothing would
	// provision it again.
	drop := !slices.Contains(spec.Services, name)
	if err := s.removeServiceData(ctx, t.app, t.instance, svc, cred, drop); err != nil {
		c.log.Warn().Err(err).Str("service", name).Msg("clear failed")
		return c.fail("clearing %s failed: %v", name, err)
	}
	if drop {
		out.Done("%s of %s is removed (its data and user): app.ini no longer asks for it", name, t)
	} else {
		out.Done("%s of %s is empty", name, t)
	}
	c.log.Info().Str("app", t.app).Str("instance", t.instance).Str("service", name).Bool("dropped", drop).Msg("service cleared")
	return nil
}

// removeServiceData clears the instance's data of svc everywhere it is
// kept, or with drop destroys it and forgets its credentials.
func (s *Server) removeServiceData(ctx context.Context, app, instance string, svc services.Service, cred services.Credentials, drop bool) error {
	where, err := s.serviceNodes(svc)
	if err != nil {
		return err
	}
	op := "clear"
	if drop {
		op = "destroy"
	}
	for _, n := range where {
		if err := s.fleet.ServiceCall(ctx, n, op, svc.Name(), app, instance, cred, nil, nil); err != nil {
			return err
		}
	}
	if !drop {
		return nil
	}
	return s.creds.update(app, instance, func(m map[string]services.Credentials) error {
		delete(m, svc.Name())
		return nil
	})
}

// lockForCommand takes the app's lock for a command, saying whom it waits
// for.
func (s *Server) lockForCommand(ctx context.Context, c *call, t target, what string, out *hooks.Progress) (func(), error) {
	release, err := s.locks.acquire(ctx, t.app, &lockHolder{user: c.key.Name, branch: t.branch, commit: what}, s.cfg.LockTimeout, lockWaitInterval, func(h *lockHolder) {
		out.Step("waiting for %s to finish", h)
	})
	if err != nil {
		return nil, c.fail("%s is busy: %v", t.app, err)
	}
	return release, nil
}
