package receiver

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/nodes"
)

// deploy is the pre-receive pipeline: every branch update is built into a
// release (app.ini validated, .pth paths fixed, manifest made) and prepared
// on every target node; only when all of that succeeded are the nodes
// switched, together, and the releases recorded and the push accepted.
func (s *Server) deploy(ctx context.Context, p *Push, out *hooks.Progress) error {
	start := time.Now()
	opts, err := parsePushOptions(p.Options())
	if err != nil {
		return err
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
			out.Step("%s: branch %s deleted; nothing deployed from it", p.App, branch)
		default:
			r, err := s.build(ctx, p, branch, u.New, out)
			if err != nil {
				return err
			}
			built = append(built, r)
		}
	}
	if len(built) > 0 {
		all, err := s.fleet.Inventory.Targets()
		if err != nil {
			p.log.Error().Err(err).Msg("reading the node inventory")
			return fmt.Errorf("cannot read the node inventory; tell the operator")
		}
		targets, err := opts.targets(all)
		if err != nil {
			return err
		}
		if len(targets) < len(all) {
			out.Step("Skipping %d of %d nodes (push option skip-node)", len(all)-len(targets), len(all))
		}
		// Phase 1 for every branch of the push, then one switch for all:
		// a push either goes live whole or not at all.
		var prepared []*nodes.Prepared
		for _, r := range built {
			pr, err := s.prepare(ctx, p, r, targets, out)
			if err != nil {
				undo(ctx, prepared)
				return err
			}
			prepared = append(prepared, pr)
		}
		out.Step("Switching %d node%s to %s", len(targets), plural(len(targets)), releaseNames(built))
		if err := s.fleet.Switch(ctx, prepared...); err != nil {
			p.log.Warn().Err(err).Msg("switching nodes failed")
			return fmt.Errorf("%w; every node is back on its previous release", err)
		}
		for _, r := range built {
			if err := s.history.Append(r.App, r.Instance, r.Record(), r.Manifest); err != nil {
				p.log.Error().Err(err).Msg("recording release")
				undo(ctx, prepared)
				return fmt.Errorf("cannot record release v%d of %s; tell the operator", r.Number, r.App)
			}
			p.log.Info().Str("instance", r.Instance).Int("release", r.Number).Str("manifest", r.ManifestHash).Msg("release live")
			out.Done("%s v%d (%s) is live on %d node%s at http://%s (%.1fs)", r.App, r.Number, r.Branch, len(targets), plural(len(targets)),
				s.runSpec(r).Locations[0], time.Since(start).Seconds())
		}
	}
	return nil
}

// undo takes back what a failed push prepared or switched.
func undo(ctx context.Context, prepared []*nodes.Prepared) {
	for _, pr := range prepared {
		pr.Undo(ctx)
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

func (s *Server) build(ctx context.Context, p *Push, branch, commit string, out *hooks.Progress) (*builder.Release, error) {
	out.Step("%s: deploying %s (%.7s) by %s", p.App, branch, commit, p.User.Name)
	instance := builder.InstanceName(branch)
	last, previous, _, err := s.history.Last(p.App, instance)
	if err != nil {
		p.log.Error().Err(err).Str("instance", instance).Msg("reading release history")
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
		SizeLimit: s.cfg.ReleaseSizeLimit,
	}, out)
	if err == nil {
		p.log.Info().Str("instance", instance).Int("release", r.Number).Dur("duration", time.Since(start)).Msg("release built")
	}
	return r, err
}
