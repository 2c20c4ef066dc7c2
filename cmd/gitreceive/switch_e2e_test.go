//go:build e2e

package main_test

// The release switch without an nginx reload (issue 20, DESIGN.md decision
// 12): a redeploy renames route links, nginx keeps its workers and its
// clients' keep-alive connections, and the switch is monotonic per node.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// releaseAnswer finds the release number the example app's / names.
var releaseAnswer = regexp.MustCompile(`release (\d+)\)`)

// exampleRelease is the release the example app's / answered with.
func exampleRelease(body string) (int, bool) {
	m := releaseAnswer.FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

func TestSwitchWithoutReload(t *testing.T) {
	f, bed := fanOutBed(t, "swr", "10.77.247.0/24", 1)
	node := bed.Nodes[0]
	const host = "sampleapp.example.com"
	work := exampleWorkTree(t, f.alice, "djangoapp")
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("sampleapp"))
	push := func(greeting string) string {
		t.Helper()
		replaceIn(t, work, "src/sampleapp/silver-app.ini", "config.greeting = hello from sampleapp", "config.greeting = "+greeting)
		f.alice.MustGit(t, work, "commit", "-qam", greeting)
		r := f.alice.MustGit(t, work, "push", "silver", "main")
		replaceIn(t, work, "src/sampleapp/silver-app.ini", "config.greeting = "+greeting, "config.greeting = hello from sampleapp")
		return r.Stderr
	}

	// The first deploy routes a new host, the second its prev. host: both
	// reload nginx, and say so.
	out := f.alice.MustGit(t, work, "push", "silver", "main").Stderr
	mustContain(t, out, "nginx reloaded: new host "+host)
	out = push("second")
	mustContain(t, out, "nginx reloaded: new host prev."+host)

	kept := newKeptConn(node, host, exampleRelease)
	if n, _, err := kept.get(); err != nil || n != 2 {
		t.Fatalf("GET / on a kept connection: release %d, %v; want 2", n, err)
	}

	// Redeploys under a poller on fresh connections: no reload (the kept
	// connection survives each), no failed request, never an older
	// release after a newer one.
	var p poller
	stop, done := make(chan struct{}), make(chan struct{})
	go p.run(node, host, exampleRelease, stop, done)
	const redeploys = 4
	for i := 0; i < redeploys; i++ {
		began := time.Now()
		out := push(fmt.Sprintf("redeploy %d", i))
		if strings.Contains(out, "nginx reloaded") {
			t.Errorf("redeploy %d reloaded nginx:\n%s", i, out)
		}
		n, reused, err := kept.get()
		if err != nil || n != 3+i || !reused {
			t.Errorf("after redeploy %d (%s): release %d on the kept connection (reused: %v, %v), want %d on the same connection",
				i, time.Since(began).Round(time.Millisecond), n, reused, err, 3+i)
		}
	}
	close(stop)
	<-done
	t.Logf("%d requests on fresh connections across %d redeploys; releases seen: %v", len(p.seen), redeploys, compact(p.seen))
	if len(p.failures) > 0 {
		t.Errorf("%d requests failed, e.g. %v", len(p.failures), p.failures[:min(5, len(p.failures))])
	}
	if len(p.flips) > 0 {
		t.Errorf("the switch went backwards %d times: %v", len(p.flips), p.flips[:min(5, len(p.flips))])
	}
	if len(p.seen) == 0 || p.seen[len(p.seen)-1] != 2+redeploys {
		t.Errorf("the poller's last answer was not v%d: %v", 2+redeploys, compact(p.seen))
	}

	// A rollback is the same rename: the kept connection survives it too,
	// and prev.HOST answers with the release it left.
	r := f.alice.SSH(t, "", nil, "activate", "sampleapp", "prev")
	if r.Code != 0 {
		t.Fatalf("activate prev: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if n, reused, err := kept.get(); err != nil || n != 1+redeploys || !reused {
		t.Errorf("after the rollback: release %d on the kept connection (reused: %v, %v), want %d on the same connection", n, reused, err, 1+redeploys)
	}
	mustGet(t, node, "prev."+host, "/", fmt.Sprintf("release %d)", 2+redeploys))
}
