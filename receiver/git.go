package receiver

import (
	"cmp"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/guard"
)

// gitProtocol matches the values git sends in GIT_PROTOCOL ("version=2").
var gitProtocol = regexp.MustCompile(`^[a-z0-9=:.]{1,64}$`)

// gitCommand serves git-receive-pack and git-upload-pack by running C git
// on the app's bare repository (DESIGN.md decision 1).
func (s *Server) gitCommand(c *call) error {
	service := strings.TrimPrefix(c.args[0], "git-")
	if len(c.args) != 2 {
		return c.fail("usage: %s", commands[c.args[0]].usage)
	}
	app, err := apps.AppFromRepoArg(c.args[1])
	if err != nil {
		c.log.Info().Str("arg", c.args[1]).Msg("invalid app name refused")
		return c.fail("%v", err)
	}
	c.log = c.log.With().Str("app", app).Logger()
	if !c.key.CanAccessApp(app) {
		c.log.Info().Msg("app not granted to key")
		return c.fail("key %s may not access app %q; ask an admin to grant it", c.key.Name, app)
	}

	env := append(apps.GitEnv(), "HOME="+s.cfg.DataDir)
	// Of the client's environment only the protocol version reaches git.
	for _, kv := range c.sess.Environ() {
		if v, ok := strings.CutPrefix(kv, "GIT_PROTOCOL="); ok && gitProtocol.MatchString(v) {
			env = append(env, kv)
		}
	}
	if service == "receive-pack" {
		return s.receivePack(c, app, env)
	}
	if !s.apps.Repos().Exists(app) {
		return c.fail("app %q does not exist yet; push to it first", app)
	}
	return s.execGit(c, service, s.apps.Repos().Path(app), env)
}

// receivePack runs one push: the repository is created on first push, and
// the push is registered with the hook socket for its pre-receive.
func (s *Server) receivePack(c *call, app string, env []string) error {
	// Counted from before the repository may be created, so that a rejected
	// first push only removes it when no other push is using it.
	s.receiving.add(app, 1)
	defer s.receiving.add(app, -1)
	repos := s.apps.Repos()
	repoDir, created, err := repos.Ensure(app)
	if err != nil {
		c.log.Error().Err(err).Msg("preparing repository")
		return c.fail("cannot prepare the repository for %s; tell the operator", app)
	}
	if s.receiving.onlyOne(app) {
		removeStaleQuarantines(c.log, repoDir)
	}

	ctx, cancel := context.WithCancel(c.sess.Context())
	p := &hookPush{Push: &apps.Push{ID: guard.NewID(), App: app, User: c.key, RepoDir: repoDir}, ctx: ctx}
	p.Log = c.log.With().Str("push", p.ID).Logger()
	c.log = p.Log
	token, err := s.hooks.register(p)
	if err != nil {
		cancel()
		c.log.Error().Err(err).Msg("registering push")
		return c.fail("cannot start the push; tell the operator")
	}
	// Also on a panic: the lock goes only once no hook handler of this
	// push still runs; each step is a no-op when already done below.
	defer func() {
		cancel()
		s.hooks.unregister(token)
		p.active.Wait()
		p.ReleaseLock()
	}()
	env = append(env,
		hooks.EnvBin+"="+s.hookBin,
		hooks.EnvSocket+"="+s.cfg.HookSocket(),
		hooks.EnvToken+"="+token,
	)
	gitErr := s.execGit(c, "receive-pack", repoDir, env)

	// The lock is held until git has finished and the push's handler has
	// returned, whichever way the push ended (client gone, hook killed):
	// the next push of this app must not overlap a deploy still running.
	cancel()
	s.hooks.unregister(token)
	p.active.Wait()
	if s.apps.ConfirmBranches(p.Push, hooks.NewProgress(c.sess.Stderr())) {
		gitErr = cmp.Or(gitErr, error(apps.ExitStatus(1)))
	}

	// receive-pack exits 0 even when it refused every ref, so look at the refs.
	if created && s.receiving.onlyOne(app) {
		if err := repos.RemoveIfEmpty(app); err != nil {
			c.log.Warn().Err(err).Msg("removing the repository of a rejected first push")
		}
	}
	if repos.Exists(app) {
		if err := repos.PointHeadAtProduction(app); err != nil {
			c.log.Warn().Err(err).Msg("pointing HEAD at the production branch")
		}
	}
	return gitErr
}

// execGit runs git SERVICE REPO wired to the session. A pusher who goes away
// kills git and the hook it runs (one process group), which cancels the push.
func (s *Server) execGit(c *call, service, repoDir string, env []string) error {
	cmd := exec.CommandContext(c.sess.Context(), "git", service, repoDir)
	cmd.Env = env
	cmd.Stdout = c.sess
	cmd.Stderr = c.sess.Stderr()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	// A pipe, not cmd.Stdin = session: with a plain reader Wait would also
	// wait for the client to close its side, which git clients do late.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		c.log.Error().Err(err).Msg("git stdin")
		return c.fail("cannot start git; tell the operator")
	}
	if err := cmd.Start(); err != nil {
		c.log.Error().Err(err).Msg("starting git")
		return c.fail("cannot start git; tell the operator")
	}
	guard.Go(c.log, "git stdin", func() {
		_, _ = io.Copy(stdin, c.sess)
		stdin.Close()
	})
	err = cmd.Wait()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return nil
	case c.sess.Context().Err() != nil:
		c.log.Info().Msg("client went away; git stopped")
		return apps.ExitStatus(1)
	case errors.As(err, &exitErr) && exitErr.ExitCode() > 0:
		return apps.ExitStatus(exitErr.ExitCode())
	default:
		c.log.Error().Err(err).Msg("git failed")
		return apps.ExitStatus(1)
	}
}

// removeStaleQuarantines deletes the quarantine directories (pushed
// objects git had not yet accepted) left in repoDir by a receive-pack that
// died with a previous receiver process: git does not remove its
// quarantine when a write to the vanished daemon kills it with SIGPIPE.
// It runs only while no other push of the app is under way here.
func removeStaleQuarantines(log zerolog.Logger, repoDir string) {
	stale, _ := filepath.Glob(filepath.Join(repoDir, "objects", "tmp_objdir-incoming-*"))
	for _, dir := range stale {
		if err := os.RemoveAll(dir); err != nil {
			log.Warn().Err(err).Str("dir", dir).Msg("removing a stale quarantine")
			continue
		}
		log.Info().Str("dir", dir).Msg("removed the quarantine of a push that died with an earlier receiver")
	}
}

// sessionCounts counts running receive-pack sessions per app, so a rejected
// first push removes the empty repository only when no other push is using it.
type sessionCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *sessionCounts) add(app string, d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[app] += d
	if c.n[app] == 0 {
		delete(c.n, app)
	}
}

func (c *sessionCounts) onlyOne(app string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[app] == 1
}
