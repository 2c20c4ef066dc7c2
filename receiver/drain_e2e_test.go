//go:build e2e

package receiver_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// waitLog polls the server's log until it holds want.
func waitLog(t *testing.T, r *running, want string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(r.logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the server never logged %q", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// repoRef reads ref from app's repository on disk (the server may be gone).
func repoRef(t *testing.T, r *running, app, ref string) string {
	t.Helper()
	repo := filepath.Join(r.client.Server.DataDir, "repos", app+".git")
	return strings.TrimSpace(r.client.MustGit(t, "", "--git-dir", repo, "rev-parse", ref).Stdout)
}

// A stopping receiver lets the push in flight finish, refuses a new push
// and a new command with the sentence, and ends once the push is done.
func TestShutdownDrainsThePushInFlightAndRefusesNewOnes(t *testing.T) {
	g := newGate(holdMain)
	r := startServerRunning(t, time.Minute, g)
	c := r.client
	work := seed(t, c, "myapp")
	g.armed.Store(1)
	c.Commit(t, work, "one", map[string]string{"app.py": "v = 1\n"})
	first := startPush(t, c, work, "silver", "main")
	g.waitEntered(t, "myapp main")

	stopped := make(chan error, 1)
	go func() { stopped <- r.shutdown(context.Background()) }()
	waitLog(t, r, "stopping: new sessions are refused")

	other := c.WorkTree(t, map[string]string{"app.ini": "[production]\napp_name = other\n"})
	refused := c.Git(t, other, "push", c.URL("other"), "main")
	if refused.Code == 0 || !strings.Contains(refused.Stderr, "gitreceive: gitreceive is restarting; push again in a moment") {
		t.Fatalf("a push during the drain: exit %d, want 1 and the sentence:\n%s", refused.Code, refused.Stderr)
	}
	cmd := c.SSH(t, "", nil, "apps")
	if cmd.Code != 1 || !strings.Contains(cmd.Stderr, "gitreceive: gitreceive is restarting; run the command again in a moment") {
		t.Fatalf("a command during the drain: exit %d, want 1 and the sentence:\n%s", cmd.Code, cmd.Stderr)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) with a push in flight", err)
	default:
	}

	close(g.release)
	if err := first.wait(t); err != nil {
		t.Fatalf("the push in flight failed: %v\n%s", err, first.output)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Shutdown did not return after the push in flight ended")
	}
	<-r.served
	if r.serveErr != nil {
		t.Fatalf("Serve: %v", r.serveErr)
	}
	head := strings.TrimSpace(c.MustGit(t, work, "rev-parse", "HEAD").Stdout)
	if branch := repoRef(t, r, "myapp", "refs/heads/main"); branch != head {
		t.Fatalf("main is %s after the drained push, want %s", branch, head)
	}
}

// A push still running at shutdown_timeout is cancelled as if its pusher
// had gone: the pusher is told, nothing moves, the log says so, and
// Shutdown reports the cut.
func TestShutdownTimeoutCancelsThePushInFlight(t *testing.T) {
	g := newGate(holdMain)
	r := startServerRunning(t, time.Minute, g)
	c := r.client
	work := seed(t, c, "myapp")
	before := repoRef(t, r, "myapp", "refs/heads/main")
	g.armed.Store(1)
	c.Commit(t, work, "one", map[string]string{"app.py": "v = 1\n"})
	first := startPush(t, c, work, "silver", "main")
	g.waitEntered(t, "myapp main")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := r.shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "shutdown_timeout reached") {
		t.Fatalf("Shutdown: %v, want the shutdown_timeout error", err)
	}
	select {
	case <-g.cancelled:
	default:
		t.Fatal("Shutdown returned before the push in flight was cancelled")
	}
	if err := first.wait(t); err == nil {
		t.Fatalf("the cancelled push succeeded:\n%s", first.output)
	}
	receivertest.MustContain(t, first.output.String(), "gitreceive: the receiver is stopping and its shutdown_timeout has run out: this was cancelled, and what it had begun is undone; try again in a moment")
	<-r.served
	if got := repoRef(t, r, "myapp", "refs/heads/main"); got != before {
		t.Fatalf("main moved to %s by a cancelled push, want %s", got, before)
	}
	for _, want := range []string{"shutdown_timeout reached: cancelling the sessions still running", "cancelled at shutdown_timeout: what this session had begun is undone"} {
		receivertest.MustContain(t, r.logs.String(), want)
	}
}
