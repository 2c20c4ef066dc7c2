//go:build e2e

package receiver_test

import (
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/receiver/guard"
)

// internalErrorLine is what the user sees of a recovered panic.
var internalErrorLine = regexp.MustCompile(`gitreceive: internal error \(([0-9a-f]{8})\); the operator can find it in the log`)

// panicOnce makes the first call at point panic; every later call passes.
func panicOnce(t *testing.T, points ...string) {
	t.Helper()
	left := map[string]*atomic.Bool{}
	for _, p := range points {
		left[p] = &atomic.Bool{}
		left[p].Store(true)
	}
	restore := guard.SetPanicHook(func(point string) {
		if b := left[point]; b != nil && b.CompareAndSwap(true, false) {
			panic("injected panic at " + point)
		}
	})
	t.Cleanup(restore)
}

// checkLogged asserts that the log has the panic under the request id the
// user was shown, with the stack of where it was raised, and what else
// the entry must contain.
func checkLogged(t *testing.T, logs *syncBuffer, shown, point string, more ...string) {
	t.Helper()
	m := internalErrorLine.FindStringSubmatch(shown)
	if m == nil {
		t.Fatalf("no internal-error sentence with a request id in:\n%s", shown)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"request":"`+m[1]+`"`) {
			for _, want := range append([]string{`"panic":"injected panic at ` + point + `"`, `"stack":"goroutine `, `guard.Point`}, more...) {
				if !strings.Contains(line, want) {
					t.Fatalf("log entry of request %s lacks %q:\n%s", m[1], want, line)
				}
			}
			return
		}
	}
	t.Fatalf("no log entry for request %s:\n%s", m[1], logs)
}

// A panic in a command and in deploy steps (in goroutines nodes starts,
// with the app's lock held) each end their own request only: the daemon
// keeps serving, the user gets one sentence with a request id, the log
// has the stack, and the next push of the same app goes live.
func TestPanicInCommandOrDeployIsRecovered(t *testing.T) {
	c, logs := startServerLogged(t, 20*time.Second, nil)
	work := seed(t, c, "myapp")
	panicOnce(t, "command apps")

	r := c.SSH(t, "", nil, "apps")
	if r.Code == 0 {
		t.Fatalf("apps with a panic succeeded:\n%s", r)
	}
	checkLogged(t, logs, r.Stderr, "command apps", `"command":"apps"`, `"in":"session"`)
	if r := c.SSH(t, "", nil, "apps"); r.Code != 0 || !strings.Contains(r.Stdout, "myapp") {
		t.Fatalf("apps after the panic:\n%s", r)
	}

	c.Commit(t, work, "two", map[string]string{"app.py": "v = 2\n"})
	head := strings.TrimSpace(c.MustGit(t, work, "rev-parse", "HEAD").Stdout)
	// Each raised in a goroutine nodes started (the node's, the one that
	// streams the contents to it) and recovered in the hook connection's,
	// with the push's fields.
	for _, step := range []struct{ point, goroutine string }{
		{"contents myapp", "nodes.writeRelease.func"},
		{"deploy myapp", "nodes.forEachNodeLimit.func"},
	} {
		panicOnce(t, step.point)
		failed := c.Git(t, work, "push", "silver", "main")
		if failed.Code == 0 {
			t.Fatalf("push with a panic at %s succeeded:\n%s", step.point, failed)
		}
		checkLogged(t, logs, failed.Stderr, step.point, `"node":"local"`, `"push":"`, `"in":"pre-receive"`, step.goroutine)
		if got := remoteRef(t, c, "myapp", "refs/heads/main"); got == head {
			t.Fatalf("main moved although its deploy panicked at %s", step.point)
		}
	}

	// The lock was released: the next push neither waits nor fails.
	again := startPush(t, c, work, "silver", "main")
	if err := again.wait(t); err != nil {
		t.Fatalf("push after the panic: %v\n%s", err, again.output)
	}
	if out := again.output.String(); strings.Contains(out, "waiting for") || !strings.Contains(out, "deploying main") {
		t.Fatalf("push after the panic:\n%s", out)
	}
	if got := remoteRef(t, c, "myapp", "refs/heads/main"); got != head {
		t.Fatalf("main is %s after the push, want %s", got, head)
	}
}
