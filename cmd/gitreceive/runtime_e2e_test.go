//go:build e2e

package main_test

// Pushes that end with the app answering HTTP: test-bed nodes set up with
// `nodes setup`, serving with nginx and the uWSGI emperor.

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
)

// mustGet fails the test unless the node answers 200 with a body holding want.
func mustGet(t *testing.T, node *testbed.Node, host, path, want string) {
	t.Helper()
	code, body := get(node, host, path)
	if code != 200 || !strings.Contains(body, want) {
		t.Fatalf("%s: GET http://%s%s = %d %q, want 200 with %q", node.Name, host, path, code, body, want)
	}
}

func TestServeOnTwoNodes(t *testing.T) {
	f, bed := fanOutBed(t, "srv", "10.77.224.0/24", 2)
	const host = "sampleapp.example.com"
	work := exampleWorkTree(t, f.alice, "djangoapp")
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("sampleapp"))
	r := f.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, "sampleapp v1 (main) is live on 2 nodes")

	style, err := os.ReadFile(filepath.Join(work, "static", "style.css"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range bed.Nodes {
		// Both imports of the runner resolve only through the fixed .pth files.
		mustGet(t, n, host, "/", "hello from sampleapp (sampleapp 1.0, tinylib 1.0, release 1)")
		for _, want := range []string{"SILVER_APP_NAME=sampleapp\n", "SILVER_CANONICAL_HOSTNAME=" + host + "\n",
			"SILVER_INSTANCE_NAME=sampleapp@main\n", "CONFIG_GREETING=hello from sampleapp\n", "TEMP=/", "HTTP_HOST=" + host + "\n"} {
			mustGet(t, n, host, "/env", want)
		}
		mustGet(t, n, host, "/secret", "secret: ")
		// static/ is served by nginx at the top level.
		mustGet(t, n, host, "/style.css", string(style))
		if code, _ := get(n, "unknown.example.com", "/"); code != 404 {
			t.Fatalf("%s: an unknown host got %d, want 404", n.Name, code)
		}
	}

	// A second push switches with zero failed requests under load: four
	// clients, a fresh connection per request, across both nodes.
	replaceIn(t, work, "src/sampleapp/silver-app.ini", "config.greeting = hello from sampleapp", "config.greeting = hello again")
	f.alice.MustGit(t, work, "commit", "-qam", "v2")
	stop := make(chan struct{})
	var total int64
	var failures []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		total, failures = load(bed.Nodes, host, 4, 1000, stop)
	}()
	time.Sleep(200 * time.Millisecond)
	r = f.alice.MustGit(t, work, "push", "silver", "main")
	close(stop)
	<-done
	mustContain(t, r.Stderr, "sampleapp v2 (main) is live on 2 nodes")
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed across the switch, e.g. %v", len(failures), total, failures[:min(5, len(failures))])
	}
	t.Logf("%d requests across the switch, 0 failed", total)
	for _, n := range bed.Nodes {
		mustGet(t, n, host, "/", "hello again (sampleapp 1.0, tinylib 1.0, release 2)")
		// The previous release stays reachable at prev.HOST.
		mustGet(t, n, "prev."+host, "/", "release 1)")
	}

	// A release whose health check fails, and one whose runner raises at
	// import, never receive traffic: the push is rejected, v2 keeps serving.
	for _, bad := range []struct {
		name, file, old, new, message string
	}{
		{"health check 500", "src/sampleapp/wsgi.py", `body = "ok"`, `body = "sick"; status = "500 Internal Server Error"`, "500"},
		{"import error", "src/sampleapp/wsgi.py", "import sampleapp\n", "import sampleapp\nraise RuntimeError('boom at import')\n", "boom at import"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			replaceIn(t, work, bad.file, bad.old, bad.new)
			replaceIn(t, work, "src/sampleapp/silver-app.ini", "health_check = /health", "health_check = /health\nhealth_check_timeout = 5")
			f.alice.MustGit(t, work, "commit", "-qam", bad.name)
			began := time.Now()
			r := f.alice.Git(t, work, "push", "silver", "main")
			if r.Code == 0 {
				t.Fatalf("push of a broken release succeeded:\n%s", r.Stderr)
			}
			mustContain(t, r.Stderr, bad.message)
			mustContain(t, r.Stderr, "Push rejected: nothing was changed.")
			t.Logf("rejected after %s", time.Since(began).Round(time.Millisecond))
			for _, n := range bed.Nodes {
				mustGet(t, n, host, "/", "hello again (sampleapp 1.0, tinylib 1.0, release 2)")
			}
			f.alice.MustGit(t, work, "reset", "-q", "--hard", "HEAD~1")
		})
	}

	// Rollback in one command, with no upload: v1 answers again, and v2
	// is the one at prev.HOST.
	r = f.alice.SSH(t, "", nil, "activate", "sampleapp", "prev")
	if r.Code != 0 {
		t.Fatalf("activate prev: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	mustContain(t, r.Stderr, "sampleapp@main v1 is live on 2 nodes")
	for _, n := range bed.Nodes {
		mustGet(t, n, host, "/", "hello from sampleapp (sampleapp 1.0, tinylib 1.0, release 1)")
		mustGet(t, n, "prev."+host, "/", "hello again")
	}
	r = f.alice.SSH(t, "", nil, "releases", "sampleapp")
	if r.Code != 0 {
		t.Fatalf("releases: %d\n%s", r.Code, r.Stderr)
	}
	for _, want := range []string{"v2 ", "v1 ", "live", "previous"} {
		mustContain(t, r.Stdout, want)
	}

	// A request that wedges is killed by the time limit (harakiri) while
	// other requests are still served.
	replaceIn(t, work, "src/sampleapp/silver-app.ini", "health_check = /health", "health_check = /health\nharakiri = 2")
	f.alice.MustGit(t, work, "commit", "-qam", "harakiri")
	f.alice.MustGit(t, work, "push", "silver", "main")
	node := bed.Nodes[0]
	wedged := make(chan int, 1)
	began := time.Now()
	go func() {
		code, _ := get(node, host, "/sleep?30")
		wedged <- code
	}()
	time.Sleep(300 * time.Millisecond)
	mustGet(t, node, host, "/", "hello again")
	select {
	case code := <-wedged:
		if code == 200 || time.Since(began) > 15*time.Second {
			t.Fatalf("the wedged request ended with %d after %s; harakiri should have killed it within seconds", code, time.Since(began))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the wedged request was not killed within 20s (harakiri = 2)")
	}

	// Logs: the access log of every node, prefixed with its name.
	r = f.alice.SSH(t, "", nil, "logs", "sampleapp", "-n", "5")
	if r.Code != 0 {
		t.Fatalf("logs: %d\n%s", r.Code, r.Stderr)
	}
	for _, n := range bed.Nodes {
		mustContain(t, r.Stdout, n.Name+" ")
	}

	// logs -f streams until the client goes; then nothing is left
	// following the files on any node.
	follow := exec.Command("sh", "-c", f.alice.SSHCommand()+" -p "+f.srv.Port()+" git@127.0.0.1 logs sampleapp -f -n 1")
	follow.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	mustGet(t, bed.Nodes[1], host, "/", "hello")
	firstLine := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		firstLine <- line
	}()
	select {
	case line := <-firstLine:
		if !strings.HasPrefix(line, bed.Nodes[0].Name) && !strings.HasPrefix(line, bed.Nodes[1].Name) {
			t.Fatalf("logs -f printed %q, want a node-prefixed line", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("logs -f printed nothing within 20s")
	}
	syscall.Kill(-follow.Process.Pid, syscall.SIGINT)
	syscall.Kill(-follow.Process.Pid, syscall.SIGKILL)
	follow.Wait()
	for _, n := range bed.Nodes {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			out, _ := bed.Exec(context.Background(), n, "sh", "-c", "pgrep -x tail || true")
			if strings.TrimSpace(string(out)) == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still runs tail (%s) after the logs -f client left", n.Name, out)
			}
		}
	}

	// The PHP example: the front controller answers paths that are not files.
	php := exampleWorkTree(t, f.alice, "phpapp")
	f.alice.MustGit(t, php, "push", f.alice.URL("phpapp"), "main")
	for _, n := range bed.Nodes {
		mustGet(t, n, "phpapp.localhost", "/", "hello from phpapp")
		mustGet(t, n, "phpapp.localhost", "/some/page", "path: /some/page")
		mustGet(t, n, "phpapp.localhost", "/", "app: phpapp")
	}
}
