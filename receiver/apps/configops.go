package apps

import (
	"context"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/rs/zerolog"
)

// ConfigVar is one of an instance's config variables: its name (never its
// value) and who set it, "app.ini" or "config:set".
type ConfigVar struct {
	Name, SetBy string
}

// ConfigVars lists the instance's config variables, by name.
func (a *Apps) ConfigVars(t Target) ([]ConfigVar, error) {
	operator, err := a.config.get(t.App, t.Instance)
	if err != nil {
		return nil, Internal(err, "cannot read the config of %s", t)
	}
	spec, _, err := a.lastSpec(t.App, t.Instance)
	if err != nil {
		return nil, Internal(err, "cannot read the newest release of %s", t)
	}
	fromOperator := map[string]bool{}
	for k := range operator {
		fromOperator["CONFIG_"+envKey(k)] = true
	}
	var names []string
	for k := range spec.Env {
		if strings.HasPrefix(k, "CONFIG_") {
			names = append(names, k)
		}
	}
	for k := range fromOperator {
		if _, ok := spec.Env[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	vars := make([]ConfigVar, len(names))
	for i, k := range names {
		vars[i] = ConfigVar{Name: k, SetBy: "app.ini"}
		if fromOperator[k] {
			vars[i].SetBy = "config:set"
		}
	}
	return vars, nil
}

// SetConfig sets the instance's operator config values (checked by
// ParseAssignments) and restarts it with them.
func (a *Apps) SetConfig(ctx context.Context, t Target, user string, values map[string]string, out *hooks.Progress) error {
	return a.changeConfig(ctx, t, user, out, func(m map[string]string) []string {
		var keys []string
		for k, v := range values {
			m[k] = v
			keys = append(keys, k)
		}
		return keys
	})
}

// UnsetConfig removes the instance's operator config keys and restarts it
// without them.
func (a *Apps) UnsetConfig(ctx context.Context, t Target, user string, keys []string, out *hooks.Progress) error {
	return a.changeConfig(ctx, t, user, out, func(m map[string]string) []string {
		for _, k := range keys {
			delete(m, k)
		}
		return keys
	})
}

// changeConfig applies change to the instance's operator config and
// restarts the instance with it: a new release of the same commit, through
// the normal health-checked two-phase switch. If that fails, the change is
// taken back.
func (a *Apps) changeConfig(ctx context.Context, t Target, user string, out *hooks.Progress, change func(map[string]string) []string) error {
	last, previous, ok, err := a.history.Last(t.App, t.Instance)
	if err != nil || !ok {
		return Failf("%s has no release to restart; push it first", t)
	}
	before, err := a.config.get(t.App, t.Instance)
	if err != nil {
		return Internal(err, "cannot read the config of %s", t)
	}
	var keys []string
	if err := a.config.update(t.App, t.Instance, func(m map[string]string) error { keys = change(m); return nil }); err != nil {
		return Internal(err, "cannot save the config of %s", t)
	}
	sort.Strings(keys)
	// Names only: the values are secrets as often as not.
	out.Step("%s: config %s changed by %s; restarting as v%d", t, strings.Join(keys, ", "), user, last.Number+1)
	if err := a.restart(ctx, t, user, last, previous, out); err != nil {
		_ = a.config.update(t.App, t.Instance, func(m map[string]string) error {
			clear(m)
			maps.Copy(m, before)
			return nil
		})
		out.Error("%v", err)
		out.Error("The config change was taken back; every node keeps its release.")
		return ExitStatus(1)
	}
	return nil
}

// restart deploys the commit of the instance's newest release again as a
// new release: the same files (nothing is uploaded), a new spec.
func (a *Apps) restart(ctx context.Context, t Target, user string, last builder.Record, previous builder.Manifest, out *hooks.Progress) error {
	start := time.Now()
	r, err := builder.Build(ctx, builder.Input{
		Git:       builder.Git{Dir: a.repos.Path(t.App)},
		App:       t.App,
		Instance:  t.Instance,
		Branch:    last.Branch,
		Commit:    last.Commit,
		Pusher:    user,
		Number:    last.Number + 1,
		Previous:  previous,
		SizeLimit: a.cfg.ReleaseSizeLimit,
	}, out)
	if err != nil {
		return err
	}
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return tellOperator(logger(ctx), err, "cannot read the node inventory")
	}
	_, err = a.goLive(ctx, []*builder.Release{r}, targets, out, start, "")
	return err
}

// SetDisabled makes the instance answer 503 on every node (disabled), or
// serve again; it returns how many nodes it changed.
func (a *Apps) SetDisabled(ctx context.Context, t Target, disabled bool) (int, error) {
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return 0, Internal(err, "cannot read the node inventory")
	}
	if err := a.fleet.SetDisabled(ctx, targets, t.App, t.Instance, disabled); err != nil {
		return 0, Failf("%v", err)
	}
	zerolog.Ctx(ctx).Info().Str("app", t.App).Str("instance", t.Instance).Bool("disabled", disabled).Msg("disable")
	return len(targets), nil
}
