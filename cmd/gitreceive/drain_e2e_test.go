//go:build e2e

package main_test

// The receiver process stopped with SIGTERM (systemctl stop, restart, an
// upgrade) while a deploy runs on a real node.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// drainApp is an app answering version on /, whose health check takes
// healthSeconds.
func drainApp(version string, healthSeconds int) map[string]string {
	return map[string]string{
		"app.ini": "[production]\napp_name = drainapp\nrunner = app.py\nhealth_check = /health\n",
		"app.py": fmt.Sprintf(`import time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/health":
        time.sleep(%d)
    start_response("200 OK", [])
    return [b"%s"]
`, healthSeconds, version),
	}
}

// pushUntil starts `git push silver main` in work and returns once its
// output holds want (a minute at most), with the push still running.
func pushUntil(t *testing.T, f *fixture, work, want string) (out *receivertest.LockedBuffer, wait func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	push := f.alice.GitCmd(ctx, work, "push", "silver", "main")
	out = &receivertest.LockedBuffer{}
	push.Stdout, push.Stderr = out, out
	// ssh, git's child, holds the output pipe too: Wait ends without it.
	push.WaitDelay = 5 * time.Second
	if err := push.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	var err error
	go func() { err = push.Wait(); cancel(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(time.Minute); !strings.Contains(out.String(), want); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the push never showed %q:\n%s", want, out)
		}
	}
	return out, func() error { <-done; return err }
}

// startFollow runs `ssh silver logs -f app` until it has printed something.
func startFollow(t *testing.T, f *fixture, app string) (out *receivertest.LockedBuffer, wait func() error) {
	t.Helper()
	c := f.alice
	follow := exec.Command("sh", "-c", c.SSHCommand()+` -p "$1" git@"$2" logs -f "$3"`, "sh", c.Server.Port(), c.Server.Host(), app)
	out = &receivertest.LockedBuffer{}
	follow.Stdout, follow.Stderr = out, out
	follow.WaitDelay = 5 * time.Second
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var err error
	go func() { err = follow.Wait(); close(done) }()
	t.Cleanup(func() { _ = follow.Process.Kill(); <-done })
	for deadline := time.Now().Add(time.Minute); out.String() == ""; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("logs -f printed nothing")
		}
	}
	return out, func() error {
		select {
		case <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatalf("logs -f still runs:\n%s", out)
			return nil
		}
	}
}

// stoppedWith SIGTERMs the receiver and waits until it drains.
func stoppedWith(t *testing.T, f *fixture) {
	t.Helper()
	f.srv.Terminate()
	until := time.Now().Add(30 * time.Second)
	for !strings.Contains(f.srv.Logs(), `"message":"stopping: new sessions are refused`) {
		if time.Now().After(until) {
			t.Fatalf("the receiver did not start draining after SIGTERM; log:\n%s", f.srv.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitedZero waits for the receiver's exit and wants status 0.
func exitedZero(t *testing.T, f *fixture) {
	t.Helper()
	code, exited := f.srv.Exited(time.Minute)
	if !exited || code != 0 {
		t.Fatalf("the receiver after SIGTERM: exited %v with %d, want exit 0", exited, code)
	}
}

func TestSIGTERMDrainsThenRestarts(t *testing.T) {
	f, bed := fanOutBed(t, "drn", "10.77.244.0/24", 1)
	node := bed.Nodes[0]
	const host = "drainapp.localhost"
	work := f.alice.WorkTree(t, drainApp("v1", 0))
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("drainapp"))
	f.alice.MustGit(t, work, "push", "silver", "main")
	mustGet(t, node, host, "/", "v1")

	// SIGTERM while v2's health check takes seconds: v2 goes live, a push
	// meanwhile is refused and changes nothing, and the receiver exits 0.
	f.alice.Commit(t, work, "v2", drainApp("v2", 4))
	logs, logsEnded := startFollow(t, f, "drainapp")
	out, wait := pushUntil(t, f, work, "vassal listening on")
	stoppedWith(t, f)
	// logs -f, which only its client would end, does not hold the stop.
	if err := logsEnded(); err == nil {
		t.Fatalf("logs -f ended by the stop exited 0:\n%s", logs)
	}
	mustContain(t, logs.String(), "gitreceive: gitreceive is restarting; run the command again in a moment to go on")
	other := f.alice.WorkTree(t, receivertest.App("otherapp", nil))
	refused := f.alice.Git(t, other, "push", f.alice.URL("otherapp"), "main")
	if refused.Code == 0 {
		t.Fatalf("a push during the drain was accepted:\n%s", refused.Stderr)
	}
	mustContain(t, refused.Stderr, "gitreceive: gitreceive is restarting; push again in a moment")
	if _, err := os.Stat(filepath.Join(f.data, "repos", "otherapp.git")); !os.IsNotExist(err) {
		t.Fatalf("the refused push left a repository: %v", err)
	}
	if err := wait(); err != nil {
		t.Fatalf("the push in flight at SIGTERM failed: %v\n%s", err, out)
	}
	mustContain(t, out.String(), "drainapp v2 (main) is live on 1 node")
	if strings.Contains(out.String(), "closed by remote host") {
		t.Fatalf("the receiver closed the connection under a push that succeeded:\n%s", out)
	}
	exitedZero(t, f)
	mustGet(t, node, host, "/", "v2")

	// A receiver started again on the data dir serves the next push.
	if err := os.WriteFile(filepath.Join(f.data, "gitreceive.ini"), []byte("shutdown_timeout = 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.srv.Restart(t)
	f.alice.Commit(t, work, "v3", drainApp("v3", 0))
	r := f.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, "drainapp v3 (main) is live on 1 node")
	mustGet(t, node, host, "/", "v3")
	v3 := strings.TrimSpace(f.alice.MustGit(t, work, "rev-parse", "HEAD").Stdout)

	// SIGTERM with a deploy that outlasts shutdown_timeout (1s): it is
	// cancelled and undone, the node stays on v3, the log says so.
	f.alice.Commit(t, work, "v4", drainApp("v4", 20))
	out, wait = pushUntil(t, f, work, "vassal listening on")
	stoppedWith(t, f)
	if err := wait(); err == nil {
		t.Fatalf("the push outlasting shutdown_timeout succeeded:\n%s", out)
	}
	mustContain(t, out.String(), "gitreceive: the receiver is stopping and its shutdown_timeout has run out")
	exitedZero(t, f)
	mustContain(t, f.srv.Logs(), "shutdown_timeout reached: cancelling the sessions still running")
	mustContain(t, f.srv.Logs(), "cancelled at shutdown_timeout: what this session had begun is undone")
	mustGet(t, node, host, "/", "v3")
	if got := currentOf(node, "drainapp"); got != "releases/v3" {
		t.Fatalf("%s: current -> %q after the cancelled deploy, want releases/v3", node.Name, got)
	}
	branch, err := exec.Command("git", "--git-dir", filepath.Join(f.data, "repos", "drainapp.git"), "rev-parse", "refs/heads/main").Output()
	if err != nil || strings.TrimSpace(string(branch)) != v3 {
		t.Fatalf("main is %s (%v) after the cancelled push, want %s", branch, err, v3)
	}
}
