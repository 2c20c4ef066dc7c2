package apps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/receiver/keystore"
)

// Push is one `git receive-pack` session: who pushes to which app, and, once
// git's pre-receive hook has reported, the ref updates and the quarantine
// environment through which the pushed objects can be read.
type Push struct {
	ID      string
	App     string
	User    keystore.Key
	RepoDir string
	Updates []hooks.RefUpdate
	Env     map[string]string // git's quarantine variables and push options
	Log     zerolog.Logger

	mu      sync.Mutex
	release func()
	// live is what this push switched nodes to in pre-receive, kept
	// until git has moved the branches (confirmBranches).
	live []liveRelease
}

// liveRelease is a release a push made live, with what takes it back.
type liveRelease struct {
	release  *builder.Release
	switched *nodes.Prepared
}

func (p *Push) wentLive(built []*builder.Release, switched []*nodes.Prepared) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range built {
		p.live = append(p.live, liveRelease{r, switched[i]})
	}
}

// GitEnv returns the environment for git plumbing that must see the pushed
// (still quarantined) objects.
func (p *Push) GitEnv() []string {
	env := make([]string, 0, len(p.Env))
	for k, v := range p.Env {
		env = append(env, k+"="+v)
	}
	return env
}

func (p *Push) setRelease(release func()) {
	p.mu.Lock()
	p.release = release
	p.mu.Unlock()
}

// ReleaseLock frees the app lock. It runs when the receive-pack session ends,
// not when the hook returns: git moves the refs after pre-receive, and the
// next push of this app must see them moved.
func (p *Push) ReleaseLock() {
	p.mu.Lock()
	release := p.release
	p.release = nil
	p.mu.Unlock()
	if release != nil {
		release()
	}
}

// lockWaitInterval is how often a waiting pusher is reminded what it waits for.
const lockWaitInterval = 3 * time.Second

// PreReceive decides a push for its pre-receive hook and returns the
// hook's exit code. ctx ends when the pusher goes away.
func (a *Apps) PreReceive(ctx context.Context, p *Push, req hooks.Request, w io.Writer) int {
	start := time.Now()
	out := hooks.NewProgress(w)
	p.Updates, p.Env = req.Updates, req.Env
	err := a.decide(ctx, p, out)
	log := p.Log.With().Int("refs", len(p.Updates)).Dur("duration", time.Since(start)).Logger()
	if err != nil {
		log.Info().Err(err).Msg("push rejected")
		out.Error("%s", err)
		out.Error("Push rejected: nothing was changed.")
		return 1
	}
	log.Info().Msg("push accepted")
	return 0
}

func (a *Apps) decide(ctx context.Context, p *Push, out *hooks.Progress) error {
	// A name that cannot be deployed is refused before the push waits for
	// the lock. Deleting such a branch stays possible.
	if err := checkRefUpdates(p.Updates, nil); err != nil {
		return err
	}
	first := p.Updates[0]
	holder := &lockHolder{user: p.User.Name, branch: shortRef(first.Ref), commit: first.ShortNew()}
	release, err := a.locks.acquire(ctx, p.App, holder, a.cfg.LockTimeout, lockWaitInterval, func(h *lockHolder) {
		out.Step("waiting for %s to finish", h)
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("the push was cancelled")
		}
		return fmt.Errorf("%s is busy: %w", p.App, err)
	}
	p.setRelease(release)

	if err := checkRefsUnmoved(p); err != nil {
		return err
	}
	refs, err := listRefs(ctx, p.RepoDir)
	if err != nil {
		return fmt.Errorf("reading the refs of %s: %w", p.App, err)
	}
	if err := checkRefUpdates(p.Updates, refs); err != nil {
		return err
	}
	for _, u := range p.Updates {
		if u.IsDelete() && isProductionBranch(u.Branch()) {
			return fmt.Errorf("deleting %s would take %s's production instance down; it is refused (to remove the app: ssh <receiver> destroy %s --confirm %s)", u.Branch(), p.App, p.App, p.App)
		}
	}
	return a.deployFunc(p.Log.WithContext(ctx), p, out)
}

// checkRefsUnmoved compares each ref with the old value the pusher saw: a
// push that waited for the lock may be based on a branch that has moved
// since, and deploying it would serve a commit the branch will never hold.
func checkRefsUnmoved(p *Push) error {
	repo, err := git.PlainOpen(p.RepoDir)
	if err != nil {
		return fmt.Errorf("opening the repository of %s: %w", p.App, err)
	}
	for _, u := range p.Updates {
		cur := strings.Repeat("0", len(u.Old))
		ref, err := repo.Reference(plumbing.ReferenceName(u.Ref), false)
		switch {
		case errors.Is(err, plumbing.ErrReferenceNotFound):
		case err != nil:
			return fmt.Errorf("reading %s: %w", u.Ref, err)
		default:
			cur = ref.Hash().String()
		}
		if cur != u.Old {
			return fmt.Errorf("%s moved while this push waited (now %.7s); fetch, merge and push again", shortRef(u.Ref), cur)
		}
	}
	return nil
}

// listRefs names every ref of the repository at dir (HEAD aside), as git
// sees them: C git, not go-git, whose walk of refs/ fails on a lock file
// another writer holds (or a crashed one left empty), which git skips.
func listRefs(ctx context.Context, dir string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "git", "for-each-ref", "--format=%(refname)")
	cmd.Dir = dir
	cmd.Env = GitEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git for-each-ref: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.Fields(string(out)), nil
}

func isProductionBranch(b string) bool { return b == "main" || b == "master" }

// shortRef shows a branch or tag as people name it.
func shortRef(ref string) string {
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		return b
	}
	if t, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		return "tag " + t
	}
	return ref
}

// GitEnv is the whole environment of the git commands the receiver runs:
// nothing of its own environment leaks into them.
func GitEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GIT_CONFIG_NOSYSTEM=1"}
}
