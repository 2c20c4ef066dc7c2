package apps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/backuparchive"
	"github.com/gitreceive/gitreceive/services"
)

// Every branch other than main/master is a staging instance of its own:
// its own host, releases and services (DESIGN.md: Silver Lining shared one
// database across locations, so staging writes hit production data).

var (
	notLabelChar = regexp.MustCompile(`[^a-z0-9]+`)
)

// parseBranchGlobs reads "staging, feature-*" (or "none", or "*").
func parseBranchGlobs(value string) ([]string, error) {
	globs := []string{}
	if strings.TrimSpace(value) == "none" {
		return globs, nil
	}
	for _, g := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' }) {
		if !names.IsBranchGlob(g) {
			return nil, fmt.Errorf("%q is not a branch name or glob (letters, digits, ._/- and * ?); write e.g. staging, feature-*, or none", g)
		}
		globs = append(globs, g)
	}
	return globs, nil
}

// matchesAny is whether branch matches one of globs (nil: every branch).
// As in git's branch patterns, * matches '/' too: feature* matches
// feature/login.
func matchesAny(globs []string, branch string) bool {
	if globs == nil {
		return true
	}
	return slices.ContainsFunc(globs, func(g string) bool {
		re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(g)) + "$"
		ok, _ := regexp.MatchString(re, branch)
		return ok
	})
}

// stagingRefusal says why a staging branch is not deployed ("" when it is):
// the receiver's staging_branches, then the app's [staging] branches,
// which can only narrow it.
func (a *Apps) stagingRefusal(branch string, appGlobs []string) string {
	switch {
	case isProductionBranch(branch):
		return ""
	case !matchesAny(a.cfg.StagingBranches, branch):
		return fmt.Sprintf("the receiver's staging_branches (%s) does not include it", globList(a.cfg.StagingBranches))
	case !matchesAny(appGlobs, branch):
		return fmt.Sprintf("app.ini's [staging] branches (%s) does not include it", globList(appGlobs))
	}
	return ""
}

func globList(globs []string) string {
	if len(globs) == 0 {
		return "none"
	}
	return strings.Join(globs, ", ")
}

// branchLabel turns a branch name into one DNS label: lowercase, every run
// of other characters (/ and _ among them) as one '-'. A label over 63
// characters is cut and ends with a hash of the whole name, so two long
// branches stay apart.
func branchLabel(branch string) string {
	l := strings.Trim(notLabelChar.ReplaceAllString(strings.ToLower(branch), "-"), "-")
	if len(l) > 63 {
		h := sha256.Sum256([]byte(branch))
		l = strings.Trim(l[:54], "-") + "-" + hex.EncodeToString(h[:4])
	}
	if l == "" {
		l = "branch"
	}
	return l
}

// location is where r's instance answers: production at app.ini's
// default_location or APP.DOMAIN; a staging branch at its [branch:NAME]
// location, else [staging]'s pattern, else BRANCH.APP.DOMAIN.
func (a *Apps) location(r *builder.Release) agent.Location {
	cfg := r.Config
	if isProductionBranch(r.Branch) {
		if cfg.DefaultLocation != nil {
			return agent.Location{Host: cfg.DefaultLocation.Host, Path: cfg.DefaultLocation.Path}
		}
		return agent.Location{Host: r.App + "." + a.cfg.Domain}
	}
	if loc, ok := cfg.BranchLocations[r.Branch]; ok {
		return agent.Location{Host: loc.Host, Path: loc.Path}
	}
	if cfg.Staging.Location != "" {
		// The pattern was checked with sample names; a label and an app
		// name keep it a host name.
		v := strings.NewReplacer("{branch}", branchLabel(r.Branch), "{app}", r.App).Replace(cfg.Staging.Location)
		host, p, _ := strings.Cut(strings.ToLower(v), "/")
		if p = strings.TrimRight(p, "/"); p != "" {
			p = "/" + p
		}
		return agent.Location{Host: host, Path: p}
	}
	return agent.Location{Host: branchLabel(r.Branch) + "." + r.App + "." + a.cfg.Domain}
}

// checkLocations refuses a push in which two branches of the app would
// answer at one location: among the built releases, and against every
// other instance's live spec. The message names both branches.
func (a *Apps) checkLocations(log zerolog.Logger, app string, built []*builder.Release, specs []agent.Spec) error {
	owner := map[string]string{} // location -> branch
	instances, err := a.appInstances(app)
	if err != nil {
		return tellOperator(log, err, "cannot read the releases of %s", app)
	}
	for _, inst := range instances {
		if slices.ContainsFunc(built, func(r *builder.Release) bool { return r.Instance == inst }) {
			continue
		}
		spec, ok, err := a.lastSpec(app, inst)
		last, _, _, _ := a.history.Last(app, inst)
		if err != nil || !ok {
			continue
		}
		for _, l := range spec.Locations {
			owner[l.String()] = last.Branch
		}
	}
	for i, r := range built {
		for _, l := range specs[i].Locations {
			if other, taken := owner[l.String()]; taken && other != r.Branch {
				return fmt.Errorf("branches %s and %s would both answer at http://%s; rename one, or give one its own location in app.ini ([branch:%s] location = ...)",
					other, r.Branch, l, r.Branch)
			}
			owner[l.String()] = r.Branch
		}
	}
	return nil
}

// seed copies the service data of instance from into r's new instance,
// through the backup path (each service's dump, then its restore): a new
// staging instance starts with a copy of production's data, never the
// reverse.
func (a *Apps) seed(ctx context.Context, r *builder.Release, fromBranch string, out *hooks.Progress) error {
	from := names.Instance(fromBranch)
	if from == r.Instance {
		return fmt.Errorf("seed-from=%s names the branch being pushed", fromBranch)
	}
	fromCreds, err := a.creds.get(r.App, from)
	if err != nil {
		return err
	}
	toCreds, err := a.creds.get(r.App, r.Instance)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(a.cfg.RunDir(), "seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, name := range slices.Sorted(maps.Keys(toCreds)) {
		fc, ok := fromCreds[name]
		svc, known := services.Lookup(name)
		if !ok || !known {
			out.Detail("%-13s not seeded: %s has no %s", name, fromBranch, name)
			continue
		}
		where, err := a.serviceNodes(svc)
		if err != nil {
			return err
		}
		dump := backuparchive.DumpPath(tmp, name)
		f, err := os.OpenFile(dump, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
		if err != nil {
			return err
		}
		err = a.fleet.ServiceCall(ctx, where[0], "backup", name, r.App, from, fc, nil, f)
		for _, n := range where {
			if err != nil {
				break
			}
			if _, err = f.Seek(0, io.SeekStart); err == nil {
				err = a.fleet.ServiceCall(ctx, n, "restore", name, r.App, r.Instance, toCreds[name], f, nil)
			}
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("seeding %s from %s: %w", name, fromBranch, err)
		}
		out.Detail("%-13s seeded from %s", name, fromBranch)
	}
	return nil
}

// removeBranch is `git push silver :BRANCH`: the branch's staging instance
// is removed from every node with its services' data, after the pusher is
// told what goes. (Push.check refuses deleting the production branch.)
func (a *Apps) removeBranch(ctx context.Context, p *Push, branch string, out *hooks.Progress) error {
	instance := names.Instance(branch)
	last, _, ok, err := a.history.Last(p.App, instance)
	if err != nil {
		p.Log.Error().Err(err).Str("instance", instance).Msg("reading release history")
		return fmt.Errorf("cannot read the release history of %s; tell the operator", p.App)
	}
	if !ok {
		out.Step("%s: branch %s deleted; it had no instance", p.App, branch)
		return nil
	}
	spec, _, err := a.lastSpec(p.App, instance)
	if err != nil {
		return tellOperator(p.Log, err, "cannot read the releases of %s", p.App)
	}
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return tellOperator(p.Log, err, "cannot read the node inventory")
	}
	where := make([]string, len(spec.Locations))
	for i, l := range spec.Locations {
		where[i] = "http://" + l.String()
	}
	svcs := "none"
	if len(spec.Services) > 0 {
		svcs = strings.Join(spec.Services, ", ")
	}
	out.Step("%s: branch %s deleted: removing instance %s (v%d at %s; services: %s) from %d node%s",
		p.App, branch, instanceTarget(p.App, branch), last.Number, strings.Join(where, " "), svcs, len(targets), Plural(len(targets)))
	if err := a.destroyInstance(ctx, out, targets, p.App, instance, true); err != nil {
		return err
	}
	p.Log.Info().Str("instance", instance).Msg("staging instance removed with its branch")
	out.Done("%s is gone: its routes, releases and data", instanceTarget(p.App, branch))
	return nil
}
