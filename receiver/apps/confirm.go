package apps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitreceive/gitreceive/hooks"
)

// ConfirmBranches runs when git receive-pack has ended, still under the
// app lock. Releases go live in pre-receive, before git moves their
// branches, and git can still fail to move one: another writer holds the
// ref's lock, the receiver's disk is full, receive-pack was killed. Each
// release whose branch does not point at its commit is taken back: its
// nodes return to the previous release and its record goes, so that the
// branch, the history and the nodes agree again. It reports whether any
// was taken back.
func (a *Apps) ConfirmBranches(p *Push, out *hooks.Progress) bool {
	p.mu.Lock()
	live := p.live
	p.live = nil
	p.mu.Unlock()
	if len(live) == 0 {
		return false
	}
	repo, openErr := git.PlainOpen(p.RepoDir)
	taken := false
	for _, l := range live {
		r := l.release
		at := ""
		if openErr == nil {
			if ref, err := repo.Reference(plumbing.NewBranchReferenceName(r.Branch), false); err == nil {
				at = ref.Hash().String()
			}
		}
		if at == r.Commit {
			continue
		}
		taken = true
		log := p.Log.With().Str("instance", r.Instance).Int("release", r.Number).Str("branch", r.Branch).Str("at", at).Logger()
		log.Warn().AnErr("open", openErr).Msg("git did not move the branch of a release that went live; taking it back")
		// The pusher may be gone already; the take-back is not theirs to cancel.
		l.switched.Undo(context.Background())
		if err := a.unrecord(r.App, r.Instance, r.Number); err != nil {
			log.Error().Err(err).Msg("removing the record of a release taken back")
		}
		a.takeBackLater(p.Log, r.App, r.Instance, l.switched.Unsure())
		back := "none (it was the instance's first release)"
		if prev, _, ok, err := a.history.Last(r.App, r.Instance); err == nil && ok {
			back = fmt.Sprintf("v%d", prev.Number)
		}
		out.Error("git did not move %s to %.7s after v%d of %s went live (git says why): v%d was taken back, and the nodes are on %s again. Push again.",
			r.Branch, r.Commit, r.Number, instanceTarget(r.App, r.Branch), r.Number, back)
	}
	if taken {
		out.Error("Push rejected: nothing was changed.")
	}
	return taken
}

// unrecord removes release n of an instance from the history with its
// spec; an instance left without releases loses its directory.
func (a *Apps) unrecord(app, instance string, n int) error {
	if err := a.history.DropLast(app, instance, n); err != nil {
		return err
	}
	if err := os.Remove(a.specPath(app, instance, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Only empty directories go.
	dir := filepath.Join(a.cfg.releasesDir(), app, instance)
	if os.Remove(dir) == nil {
		_ = os.Remove(filepath.Dir(dir))
	}
	return nil
}
