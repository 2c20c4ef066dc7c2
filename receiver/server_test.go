//go:build e2e

package receiver_test

// These tests run the server in this process so that the pre-receive step
// can be held open (standing in for a long deploy); everything else is
// real: the OpenSSH and git clients, C git, the hook and its relay binary.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

var bin string

func TestMain(m *testing.M) { os.Exit(receivertest.RunWithBinary(m, &bin)) }

const waitLimit = 30 * time.Second

// startServer runs a server in-process with alice as admin.
func startServer(t *testing.T, lockTimeout time.Duration, g *gate) *receivertest.Client {
	t.Helper()
	c, _ := startServerLogged(t, lockTimeout, g)
	return c
}

// startServerLogged is startServer that also returns the server's log.
func startServerLogged(t *testing.T, lockTimeout time.Duration, g *gate) (*receivertest.Client, *syncBuffer) {
	t.Helper()
	r := startServerRunning(t, lockTimeout, g)
	return r.client, r.logs
}

// running is an in-process server, for the tests that stop it themselves.
type running struct {
	client *receivertest.Client
	logs   *syncBuffer
	srv    *receiver.Server
	served chan struct{} // closed when Serve has returned, with serveErr
	// serveErr is Serve's result.
	serveErr error

	stopOnce sync.Once
	stopErr  error
}

// shutdown runs the server's Shutdown once (the test's, else the cleanup's).
func (r *running) shutdown(ctx context.Context) error {
	r.stopOnce.Do(func() { r.stopErr = r.srv.Shutdown(ctx) })
	return r.stopErr
}

// startServerRunning is startServer that returns the server and its log.
func startServerRunning(t *testing.T, lockTimeout time.Duration, g *gate) *running {
	t.Helper()
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen")
	data := t.TempDir()
	// The local node's agent (a child of the server, inheriting this
	// environment) keeps releases here instead of the host's /srv.
	t.Setenv(agent.RootEnv, filepath.Join(data, "local-node"))
	key := receivertest.NewKey(t, t.TempDir(), "alice")
	receivertest.AddAdmin(t, data, key)
	r := &running{logs: &syncBuffer{}, served: make(chan struct{})}
	opts := []receiver.Option{receiver.WithHookBinary(bin)}
	if g != nil {
		opts = append(opts, receiver.WithPreReceive(g.wrap))
	}
	var err error
	r.srv, err = receiver.New(apps.Config{DataDir: data, LockTimeout: lockTimeout, Version: "test"}, zerolog.New(r.logs), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { r.serveErr = r.srv.Serve(ln); close(r.served) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.shutdown(ctx)
		<-r.served
		if t.Failed() {
			t.Logf("server log:\n%s", r.logs.String())
		}
	})
	r.client = receivertest.NewClient(t, receivertest.Server{Addr: ln.Addr().String(), DataDir: data}, key)
	return r
}

// gate holds pre-receive open, standing in for a long deploy, for the next
// n pushes that match once armed.
type gate struct {
	match     func(p *apps.Push) bool
	armed     atomic.Int32
	entered   chan string // "app branch" of each held push
	release   chan struct{}
	cancelled chan string
}

func newGate(match func(p *apps.Push) bool) *gate {
	return &gate{match: match, entered: make(chan string, 16), release: make(chan struct{}), cancelled: make(chan string, 16)}
}

func (g *gate) wrap(next apps.DeployFunc) apps.DeployFunc {
	return func(ctx context.Context, p *apps.Push, out *hooks.Progress) error {
		if g.match(p) && g.armed.Add(-1) >= 0 {
			id := p.App + " " + p.Updates[0].Branch()
			g.entered <- id
			select {
			case <-g.release:
			case <-ctx.Done():
				g.cancelled <- id
				return ctx.Err()
			}
		}
		return next(ctx, p, out)
	}
}

func (g *gate) waitEntered(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-g.entered:
		if got != want {
			t.Fatalf("pre-receive entered for %q, want %q", got, want)
		}
	case <-time.After(waitLimit):
		t.Fatalf("pre-receive for %q was not reached", want)
	}
}

// push is a `git push` running in the background.
type push struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{}
	err    error
}

func startPush(t *testing.T, c *receivertest.Client, dir string, args ...string) *push {
	t.Helper()
	cmd := c.GitCmd(context.Background(), dir, append([]string{"push", "--progress"}, args...)...)
	p := &push{cmd: cmd, output: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // to kill git and its ssh together
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill(); <-p.done })
	return p
}

func (p *push) kill() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

func (p *push) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(waitLimit):
		t.Fatalf("push did not finish; output:\n%s", p.output.String())
		return nil
	}
}

func (p *push) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(p.output.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("push output never showed %q:\n%s", want, p.output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func clone(t *testing.T, c *receivertest.Client, app string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), app)
	c.MustGit(t, "", "clone", "-q", c.URL(app), dir)
	return dir
}

func remoteRef(t *testing.T, c *receivertest.Client, app, ref string) string {
	t.Helper()
	out := c.MustGit(t, "", "ls-remote", c.URL(app), ref).Stdout
	sha, _, _ := strings.Cut(out, "\t")
	return sha
}

func shortHead(t *testing.T, c *receivertest.Client, dir string) string {
	t.Helper()
	return strings.TrimSpace(c.MustGit(t, dir, "rev-parse", "--short=7", "HEAD").Stdout)
}

func holdMain(p *apps.Push) bool { return p.Updates[0].Branch() == "main" }

// seed pushes a first commit to app's main with nothing held.
func seed(t *testing.T, c *receivertest.Client, app string) string {
	t.Helper()
	work := c.WorkTree(t, receivertest.App("myapp", nil))
	c.MustGit(t, work, "remote", "add", "silver", c.URL(app))
	c.MustGit(t, work, "push", "-q", "silver", "main")
	return work
}

func TestSecondPushToSameAppWaitsThenSucceeds(t *testing.T) {
	g := newGate(holdMain)
	c := startServer(t, time.Minute, g)
	work := seed(t, c, "myapp")
	g.armed.Store(1)
	other := clone(t, c, "myapp")

	c.Commit(t, work, "one", map[string]string{"app.py": "v = 1\n"})
	first := startPush(t, c, work, "silver", "main")
	g.waitEntered(t, "myapp main")

	c.MustGit(t, other, "checkout", "-q", "-b", "feature")
	c.Commit(t, other, "two", map[string]string{"b.py": "b = 1\n"})
	second := startPush(t, c, other, "origin", "feature")
	second.waitOutput(t, fmt.Sprintf("remote: -----> waiting for alice's deploy of main (%s) to finish", shortHead(t, c, work)))
	if strings.Contains(second.output.String(), "deploying feature") {
		t.Fatal("second push went ahead while the first held the lock")
	}

	close(g.release)
	if err := first.wait(t); err != nil {
		t.Fatalf("first push: %v\n%s", err, first.output)
	}
	if err := second.wait(t); err != nil {
		t.Fatalf("second push: %v\n%s", err, second.output)
	}
	if !strings.Contains(second.output.String(), "remote: -----> myapp: deploying feature ("+shortHead(t, c, other)+") by alice") {
		t.Fatalf("second push output:\n%s", second.output)
	}
}

func TestPushBasedOnMovedBranchIsRejectedAfterWaiting(t *testing.T) {
	g := newGate(holdMain)
	c := startServer(t, time.Minute, g)
	work := seed(t, c, "myapp")
	g.armed.Store(1)
	other := clone(t, c, "myapp")

	c.Commit(t, work, "one", map[string]string{"app.py": "v = 1\n"})
	first := startPush(t, c, work, "silver", "main")
	g.waitEntered(t, "myapp main")

	c.Commit(t, other, "conflicting", map[string]string{"app.py": "v = 2\n"})
	second := startPush(t, c, other, "origin", "main")
	second.waitOutput(t, "waiting for alice's deploy of main")
	close(g.release)
	if err := first.wait(t); err != nil {
		t.Fatalf("first push: %v\n%s", err, first.output)
	}
	if err := second.wait(t); err == nil {
		t.Fatalf("stale push succeeded:\n%s", second.output)
	}
	out := second.output.String()
	if !strings.Contains(out, "main moved while this push waited (now "+shortHead(t, c, work)+")") ||
		!strings.Contains(out, "Push rejected: nothing was changed.") {
		t.Fatalf("stale push output:\n%s", out)
	}
	head := strings.TrimSpace(c.MustGit(t, work, "rev-parse", "HEAD").Stdout)
	if got := remoteRef(t, c, "myapp", "refs/heads/main"); got != head {
		t.Fatalf("main = %s, want the first push's %s", got, head)
	}
}

func TestPushesToDifferentAppsRunInParallel(t *testing.T) {
	g := newGate(func(*apps.Push) bool { return true })
	g.armed.Store(2)
	c := startServer(t, time.Minute, g)
	var pushes []*push
	for _, app := range []string{"alpha", "beta"} {
		work := c.WorkTree(t, receivertest.App(app, nil))
		pushes = append(pushes, startPush(t, c, work, c.URL(app), "main"))
	}
	// Both pushes are inside pre-receive at the same time.
	got := map[string]bool{}
	for range pushes {
		select {
		case id := <-g.entered:
			got[id] = true
		case <-time.After(waitLimit):
			t.Fatalf("only %v reached pre-receive: pushes to different apps were serialized", got)
		}
	}
	close(g.release)
	for _, p := range pushes {
		if err := p.wait(t); err != nil {
			t.Fatalf("push: %v\n%s", err, p.output)
		}
	}
}

func TestKilledClientCancelsPushAndFreesLock(t *testing.T) {
	g := newGate(holdMain)
	c := startServer(t, time.Minute, g)
	work := seed(t, c, "myapp")
	g.armed.Store(1)
	before := remoteRef(t, c, "myapp", "refs/heads/main")

	c.Commit(t, work, "one", map[string]string{"app.py": "v = 1\n"})
	first := startPush(t, c, work, "silver", "main")
	g.waitEntered(t, "myapp main")
	first.kill()
	select {
	case <-g.cancelled:
	case <-time.After(waitLimit):
		t.Fatal("the push was not cancelled when its client was killed")
	}
	_ = first.wait(t)
	if got := remoteRef(t, c, "myapp", "refs/heads/main"); got != before {
		t.Fatalf("main moved to %s by a killed push", got)
	}

	// The next push goes straight through: no waiting.
	start := time.Now()
	r := c.MustGit(t, work, "push", "silver", "main")
	if strings.Contains(r.Stderr, "waiting for") {
		t.Fatalf("next push waited for a dead one:\n%s", r.Stderr)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("next push took %s", d)
	}
}

func TestKilledHookFreesLock(t *testing.T) {
	g := newGate(holdMain)
	c := startServer(t, time.Minute, g)
	work := seed(t, c, "myapp")
	g.armed.Store(1)

	c.Commit(t, work, "one", map[string]string{"app.py": "v = 1\n"})
	first := startPush(t, c, work, "silver", "main")
	g.waitEntered(t, "myapp main")
	hook := findProcess(t, bin, "hook", "pre-receive")
	if err := syscall.Kill(hook, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := first.wait(t); err == nil {
		t.Fatalf("push with a killed hook succeeded:\n%s", first.output)
	}
	r := c.MustGit(t, work, "push", "silver", "main")
	if strings.Contains(r.Stderr, "waiting for") {
		t.Fatalf("next push waited after the hook died:\n%s", r.Stderr)
	}
}

func TestLockWaitGivesUp(t *testing.T) {
	g := newGate(holdMain)
	c := startServer(t, 2*time.Second, g)
	g.armed.Store(1)
	work := c.WorkTree(t, receivertest.App("myapp", nil))
	first := startPush(t, c, work, c.URL("myapp"), "main")
	g.waitEntered(t, "myapp main")

	c.MustGit(t, work, "checkout", "-q", "-b", "feature")
	r := c.Git(t, work, "push", c.URL("myapp"), "feature")
	if r.Code == 0 {
		t.Fatalf("push succeeded while the app was locked: %s", r)
	}
	for _, want := range []string{"myapp is busy: gave up after waiting", "alice's deploy of main", "Push rejected: nothing was changed.", "pre-receive hook declined"} {
		if !strings.Contains(r.Stderr, want) {
			t.Fatalf("output lacks %q:\n%s", want, r.Stderr)
		}
	}
	close(g.release)
	if err := first.wait(t); err != nil {
		t.Fatalf("first push: %v\n%s", err, first.output)
	}
	if got := remoteRef(t, c, "myapp", "refs/heads/feature"); got != "" {
		t.Fatalf("feature was created by a rejected push: %s", got)
	}
}

func TestProductionBranchCannotBeDeleted(t *testing.T) {
	c := startServer(t, time.Minute, nil)
	work := seed(t, c, "myapp")
	c.MustGit(t, work, "push", "-q", "silver", "main:feature-x")

	r := c.Git(t, work, "push", "silver", ":main")
	if r.Code == 0 || !strings.Contains(r.Stderr, "deleting main would take myapp's production instance down") {
		t.Fatalf("deleting main: %s", r)
	}
	if remoteRef(t, c, "myapp", "refs/heads/main") == "" {
		t.Fatal("main was deleted")
	}
	// A staging branch can go.
	r = c.MustGit(t, work, "push", "silver", ":feature-x")
	if !strings.Contains(r.Stderr, "remote: -----> myapp: branch feature-x deleted") {
		t.Fatalf("deleting feature-x:\n%s", r.Stderr)
	}
}

// findProcess returns the pid of the one process whose argv is exactly argv.
func findProcess(t *testing.T, argv ...string) int {
	t.Helper()
	want := strings.Join(argv, "\x00") + "\x00"
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			var pid int
			if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
				continue
			}
			if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && string(b) == want {
				return pid
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no process %q", argv)
	return 0
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer = receivertest.LockedBuffer
