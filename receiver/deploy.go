package receiver

import (
	"context"
	"fmt"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
)

// deploy is the pre-receive pipeline: every branch update is built into a
// release (app.ini validated, .pth paths fixed, manifest made); only when
// all of them build is the push accepted and the releases recorded.
func (s *Server) deploy(ctx context.Context, p *Push, out *hooks.Progress) error {
	start := time.Now()
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
		targets, err := s.fleet.Inventory.List()
		if err != nil {
			p.log.Error().Err(err).Msg("reading the node inventory")
			return fmt.Errorf("cannot read the node inventory; tell the operator")
		}
		// With no nodes the release is built and recorded only; the default
		// local node arrives with the nodes issue.
		if len(targets) > 0 {
			for _, r := range built {
				if err := s.fanOut(ctx, p, r, targets, out); err != nil {
					return err
				}
			}
		}
	}
	for _, r := range built {
		if err := s.history.Append(r.App, r.Instance, r.Record(), r.Manifest); err != nil {
			p.log.Error().Err(err).Msg("recording release")
			return fmt.Errorf("cannot record release v%d of %s; tell the operator", r.Number, r.App)
		}
		p.log.Info().Str("instance", r.Instance).Int("release", r.Number).Str("manifest", r.ManifestHash).Msg("release built")
		out.Done("%s v%d (%s) is built (%.1fs)", r.App, r.Number, r.Branch, time.Since(start).Seconds())
	}
	return nil
}

func (s *Server) build(ctx context.Context, p *Push, branch, commit string, out *hooks.Progress) (*builder.Release, error) {
	out.Step("%s: deploying %s (%.7s) by %s", p.App, branch, commit, p.User.Name)
	instance := builder.InstanceName(branch)
	last, previous, _, err := s.history.Last(p.App, instance)
	if err != nil {
		p.log.Error().Err(err).Str("instance", instance).Msg("reading release history")
		return nil, fmt.Errorf("cannot read the release history of %s; tell the operator", p.App)
	}
	return builder.Build(ctx, builder.Input{
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
}
