package apps

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

// Deploy is the pre-receive pipeline: every branch update is built into a
// release (app.ini validated, .pth paths fixed, manifest made) and prepared
// on every target node; only when all of that succeeded are the nodes
// switched, together, and the releases recorded and the push accepted.
func (a *Apps) Deploy(ctx context.Context, p *Push, out *hooks.Progress) error {
	start := time.Now()
	if a.cfg.DeployOff {
		acceptWithoutDeploy(p, out)
		return nil
	}
	opts, err := parsePushOptions(p.Options())
	if err != nil {
		return err
	}
	if opts.seedFrom != "" && !slices.ContainsFunc(p.Updates, func(u hooks.RefUpdate) bool {
		return u.Branch() != "" && !isProductionBranch(u.Branch()) && !u.IsDelete()
	}) {
		return fmt.Errorf("push option seed-from=%s seeds a new staging instance, and this push deploys none; production is never seeded", opts.seedFrom)
	}
	var built []*builder.Release
	for _, u := range p.Updates {
		branch := u.Branch()
		switch {
		case u.Tag() != "":
			out.Step("%s: tag %s accepted; tags deploy nothing", p.App, u.Tag())
		case branch == "":
			out.Step("%s: %s accepted; only branches deploy", p.App, u.Ref)
		case u.IsDelete():
			if err := a.removeBranch(ctx, p, branch, out); err != nil {
				return err
			}
		case a.stagingRefusal(branch, nil) != "":
			out.Step("%s: branch %s accepted, not deployed: %s", p.App, branch, a.stagingRefusal(branch, nil))
		default:
			r, err := a.build(ctx, p, branch, u.New, out)
			if err != nil {
				return err
			}
			if why := a.stagingRefusal(branch, r.Config.Staging.Branches); why != "" {
				out.Step("%s: branch %s accepted, not deployed: %s", p.App, branch, why)
				continue
			}
			built = append(built, r)
		}
	}
	if len(built) > 0 {
		all, err := a.fleet.Inventory.Targets()
		if err != nil {
			p.Log.Error().Err(err).Msg("reading the node inventory")
			return fmt.Errorf("cannot read the node inventory; tell the operator")
		}
		targets, err := opts.targets(all)
		if err != nil {
			return err
		}
		if len(targets) < len(all) {
			out.Step("Skipping %d of %d nodes (push option skip-node)", len(all)-len(targets), len(all))
		}
		switched, err := a.goLive(ctx, built, targets, out, start, opts.seedFrom)
		if err != nil {
			return err
		}
		p.wentLive(built, switched)
		a.issueCerts(ctx, p.Log, built, out)
	}
	return nil
}

// acceptWithoutDeploy is the whole pipeline of a receiver with `deploy =
// false`: the updates passed decide's checks and are accepted as
// they are; nothing is built, deployed or removed from nodes.
func acceptWithoutDeploy(p *Push, out *hooks.Progress) {
	var accepted, deleted []string
	for _, u := range p.Updates {
		name := shortRef(u.Ref)
		if q := strconv.QuoteToASCII(name); q != `"`+name+`"` {
			name = names.Show(name) // look-alikes and control characters stand out
		}
		if u.IsDelete() {
			deleted = append(deleted, name)
		} else {
			accepted = append(accepted, name)
		}
	}
	var what []string
	if len(accepted) > 0 {
		what = append(what, strings.Join(accepted, ", ")+" accepted")
	}
	if len(deleted) > 0 {
		what = append(what, strings.Join(deleted, ", ")+" deleted")
	}
	out.Step("%s: deploy is off on this receiver; %s, nothing deployed", p.App, strings.Join(what, "; "))
	p.Log.Info().Msg("deploy is off: push accepted without a deploy")
}

// goLive prepares every built release on the targets (phase 1), then
// switches them all at once (phase 2), records them, and says where they
// are live: a push (or a config change) goes live whole or not at all. A
// new staging instance starts with a copy of seedFrom's service data
// (seedFrom "": app.ini's [staging] seed_from, else empty). It returns
// each release's switch, in built's order, which can still be undone.
func (a *Apps) goLive(ctx context.Context, built []*builder.Release, targets []nodes.Node, out *hooks.Progress, start time.Time, seedFrom string) ([]*nodes.Prepared, error) {
	specs, err := a.specsFor(ctx, built)
	if err != nil {
		return nil, err
	}
	// Before anything is provisioned: a host under another app's name, or
	// claimed by another app, is refused naming that app.
	doneClaiming, err := a.claimHosts(built, specs)
	if err != nil {
		return nil, err
	}
	defer doneClaiming()
	var prepared []*nodes.Prepared
	defer settleOnPanic(ctx, &prepared) // switchAll's
	prepared, err = a.prepareAll(ctx, built, specs, targets, out, seedFrom)
	if err != nil {
		return nil, err
	}
	if err := a.switchAll(ctx, built, specs, prepared, targets, out, start); err != nil {
		return nil, err
	}
	return prepared, nil
}

// specsFor checks the built releases against the receiver's settings
// (limits, locations, services, packages) and makes the spec each runs with.
func (a *Apps) specsFor(ctx context.Context, built []*builder.Release) ([]agent.Spec, error) {
	specs := make([]agent.Spec, len(built))
	for i, r := range built {
		// Here, not in the build, so that config:set, which rebuilds
		// the release, is held to the caps of the day too.
		if err := a.checkLimits(r, len(built) > 1); err != nil {
			return nil, err
		}
		spec, err := a.runSpec(r)
		if err != nil {
			return nil, tellOperator(logger(ctx), err, "cannot read the config of %s", r.App)
		}
		specs[i] = spec
	}
	if err := a.checkLocations(logger(ctx), built[0].App, built, specs); err != nil {
		return nil, err
	}
	if err := a.checkAllowedServices(built, specs); err != nil {
		return nil, err
	}
	if err := a.checkAllowedPackages(built); err != nil {
		return nil, err
	}
	return specs, nil
}

// prepareAll is phase 1 for every built release: packages installed,
// services provisioned (and a new staging instance seeded), the release
// made ready on every target. On any failure what was prepared is undone.
func (a *Apps) prepareAll(ctx context.Context, built []*builder.Release, specs []agent.Spec, targets []nodes.Node, out *hooks.Progress, seedFrom string) ([]*nodes.Prepared, error) {
	var prepared []*nodes.Prepared
	defer settleOnPanic(ctx, &prepared) // the releases prepared before one that panics
	for i, r := range built {
		pr, err := a.prepareOne(ctx, r, &specs[i], targets, out, seedFrom)
		if err != nil {
			a.undo(ctx, built, prepared)
			return nil, err
		}
		prepared = append(prepared, pr)
	}
	return prepared, nil
}

func (a *Apps) prepareOne(ctx context.Context, r *builder.Release, spec *agent.Spec, targets []nodes.Node, out *hooks.Progress, seedFrom string) (*nodes.Prepared, error) {
	log := logger(ctx)
	_, _, exists, err := a.history.Last(r.App, r.Instance)
	if err != nil {
		return nil, tellOperator(log, err, "cannot read the release history of %s", r.App)
	}
	if err := a.installPackages(ctx, r, targets, out); err != nil {
		return nil, err
	}
	if err := a.provision(ctx, r, spec, targets, out); err != nil {
		return nil, err
	}
	if from := cmp.Or(seedFrom, r.Config.Staging.SeedFrom); from != "" && !isProductionBranch(r.Branch) {
		if exists && seedFrom != "" {
			out.Detail("%s already exists: not seeded from %s (only a new instance is)", instanceTarget(r.App, r.Branch), from)
		} else if !exists {
			if err := a.seed(ctx, r, from, out); err != nil {
				log.Warn().Err(err).Msg("seeding failed")
				return nil, err
			}
		}
	}
	return a.prepare(ctx, r, *spec, targets, out)
}

// settleOnPanic, deferred, ends the prepare sessions of *prepared when
// the caller panics, then lets the panic go on: no node's agent is left
// waiting for a word to switch that will not come.
func settleOnPanic(ctx context.Context, prepared *[]*nodes.Prepared) {
	v := recover()
	if v == nil {
		return
	}
	for _, pr := range *prepared {
		pr.Settle(ctx)
	}
	panic(v)
}

// switchAll is phase 2: every node switched to the prepared releases at
// once, then the releases recorded; any failure leaves every node on its
// previous release.
func (a *Apps) switchAll(ctx context.Context, built []*builder.Release, specs []agent.Spec, prepared []*nodes.Prepared, targets []nodes.Node, out *hooks.Progress, start time.Time) error {
	log := logger(ctx)
	out.Step("Switching %d node%s to %s", len(targets), Plural(len(targets)), releaseNames(built))
	switchStart := time.Now()
	err := a.fleet.Switch(ctx, prepared...)
	log.Info().Int("nodes", len(targets)).Dur("duration", time.Since(switchStart)).Err(err).Msg("switch")
	if err != nil {
		log.Warn().Err(err).Msg("switching nodes failed")
		a.takeBackUnsure(log, built, prepared) // Switch has undone the rest
		return fmt.Errorf("%w; every node is back on its previous release", err)
	}
	for i, r := range built {
		if err := a.record(r, specs[i]); err != nil {
			log.Error().Err(err).Msg("recording release")
			a.undo(ctx, built, prepared)
			return fmt.Errorf("cannot record release v%d of %s; tell the operator", r.Number, r.App)
		}
		log.Info().Str("instance", r.Instance).Int("release", r.Number).Str("manifest", r.ManifestHash).Msg("release live")
		out.Done("%s v%d (%s) is live on %d node%s at http://%s (%.1fs)", r.App, r.Number, r.Branch, len(targets), Plural(len(targets)),
			specs[i].Locations[0], time.Since(start).Seconds())
	}
	// Live first, then what follows the switch on each node (workers,
	// tidying): the push ends, and the app's lock is released, once it
	// is done.
	settleStart := time.Now()
	for _, pr := range prepared {
		pr.Settle(ctx)
		for _, w := range pr.Warnings() {
			out.Detail("%s", w)
		}
	}
	log.Info().Dur("duration", time.Since(settleStart)).Msg("switch settled")
	return nil
}

// checkLimits refuses a release whose app.ini asks for more than this
// receiver allows (memory, max_processes) or runs workers that do not fit
// what it gets, before anything is provisioned or uploaded. With several
// releases in one push the error says whose app.ini it is.
func (a *Apps) checkLimits(r *builder.Release, several bool) error {
	err := r.Config.CheckLimits(a.cfg.Limits)
	if err != nil && several {
		return fmt.Errorf("branch %s: %w", r.Branch, err)
	}
	return err
}

// record appends r to its instance's history, with the spec it runs
// with beside it (0600: it holds the app's config values), which `apps`
// and `config` read.
func (a *Apps) record(r *builder.Release, spec agent.Spec) error {
	data, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	path := a.specPath(r.App, r.Instance, r.Number)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return err
	}
	return a.history.Append(r.App, r.Instance, r.Record(), r.Manifest)
}

// specPath is where record keeps release n's spec.
func (a *Apps) specPath(app, instance string, n int) string {
	return filepath.Join(a.cfg.releasesDir(), app, instance, fmt.Sprintf("v%d.spec.json", n))
}

// lastSpec is the spec of the instance's newest release.
func (a *Apps) lastSpec(app, instance string) (agent.Spec, bool, error) {
	var spec agent.Spec
	last, _, ok, err := a.history.Last(app, instance)
	if err != nil || !ok {
		return spec, false, err
	}
	data, err := os.ReadFile(a.specPath(app, instance, last.Number))
	if err != nil {
		return spec, false, err
	}
	return spec, true, json.Unmarshal(data, &spec)
}

// undo takes back what a failed push prepared or switched (prepared[i]
// is built[i]'s).
func (a *Apps) undo(ctx context.Context, built []*builder.Release, prepared []*nodes.Prepared) {
	for _, pr := range prepared {
		pr.Undo(ctx)
	}
	a.takeBackUnsure(logger(ctx), built, prepared)
}

// takeBackUnsure hands the nodes an undo could not reach, which may still
// be live on the new release, to takeBackLater.
func (a *Apps) takeBackUnsure(log zerolog.Logger, built []*builder.Release, prepared []*nodes.Prepared) {
	for i, pr := range prepared {
		a.takeBackLater(log, built[i].App, built[i].Instance, pr.Unsure())
	}
}

// releaseNames is "v7", or "production v7, branch-x v3" for several.
func releaseNames(built []*builder.Release) string {
	if len(built) == 1 {
		return fmt.Sprintf("v%d", built[0].Number)
	}
	names := make([]string, len(built))
	for i, r := range built {
		names[i] = fmt.Sprintf("%s v%d", r.Instance, r.Number)
	}
	return strings.Join(names, ", ")
}

func (a *Apps) build(ctx context.Context, p *Push, branch, commit string, out *hooks.Progress) (*builder.Release, error) {
	out.Step("%s: deploying %s (%.7s) by %s", p.App, branch, commit, p.User.Name)
	instance := names.Instance(branch)
	last, previous, _, err := a.history.Last(p.App, instance)
	if err != nil {
		p.Log.Error().Err(err).Str("instance", instance).Msg("reading release history")
		return nil, fmt.Errorf("cannot read the release history of %s; tell the operator", p.App)
	}
	start := time.Now()
	r, err := builder.Build(ctx, builder.Input{
		Git:       builder.Git{Dir: p.RepoDir, Env: p.GitEnv()},
		App:       p.App,
		Instance:  instance,
		Branch:    branch,
		Commit:    commit,
		Pusher:    p.User.Name,
		Number:    last.Number + 1,
		Previous:  previous,
		SizeLimit: a.cfg.ReleaseSizeLimit,
	}, out)
	if err == nil {
		p.Log.Info().Str("instance", instance).Int("release", r.Number).Dur("duration", time.Since(start)).Msg("release built")
	}
	return r, err
}

// LivePackages are the packages = of every instance's newest release
// under the data dir, sorted, each once: what `nodes setup` installs on a
// node so that it can serve them.
func LivePackages(dataDir string) ([]string, error) {
	// A back-end holding only the data dir: the readers `apps` and
	// `config` use, for the local CLI.
	a := &Apps{cfg: Config{DataDir: dataDir}}
	a.history = builder.History{Dir: a.cfg.releasesDir()}
	apps, err := os.ReadDir(a.cfg.releasesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the releases: %w", err)
	}
	seen := map[string]bool{}
	for _, app := range apps {
		instances, err := a.appInstances(app.Name())
		if err != nil {
			return nil, fmt.Errorf("reading the releases of %s: %w", app.Name(), err)
		}
		for _, inst := range instances {
			spec, _, err := a.lastSpec(app.Name(), inst)
			if err != nil {
				return nil, fmt.Errorf("reading the spec of %s/%s: %w", app.Name(), inst, err)
			}
			for _, p := range spec.Packages {
				seen[p] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}
