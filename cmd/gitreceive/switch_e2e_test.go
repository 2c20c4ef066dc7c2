//go:build e2e

package main_test

// The release switch without an nginx reload (issue 20, DESIGN.md decision
// 12): a redeploy renames route links, nginx keeps its workers and its
// clients' keep-alive connections, and the switch is monotonic per node.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
)

// releaseAnswer finds the release number the example app's / names.
var releaseAnswer = regexp.MustCompile(`release (\d+)\)`)

// keptConn is an HTTP client with one keep-alive connection to a node.
type keptConn struct {
	node   *testbed.Node
	host   string
	client *http.Client
}

func newKeptConn(node *testbed.Node, host string) *keptConn {
	return &keptConn{node: node, host: host, client: &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: 5 * time.Minute},
	}}
}

// get requests / and returns the release that answered and whether the
// request went over the connection the previous one used.
func (k *keptConn) get() (release int, reused bool, err error) {
	req, err := http.NewRequest("GET", "http://"+k.node.IP+"/", nil)
	if err != nil {
		return 0, false, err
	}
	req.Host = k.host
	req = req.WithContext(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	}))
	resp, err := k.client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, reused, err
	}
	m := releaseAnswer.FindStringSubmatch(string(body))
	if resp.StatusCode != 200 || m == nil {
		return 0, reused, fmt.Errorf("%d %q", resp.StatusCode, body)
	}
	release, _ = strconv.Atoi(m[1])
	return release, reused, nil
}

// poller requests / on fresh connections, one after another, recording
// which release answered each.
type poller struct {
	mu       sync.Mutex
	seen     []int
	failures []string
	flips    []string // an older release answering after a newer one had
}

func (p *poller) run(node *testbed.Node, host string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	deadline := time.Now().Add(3 * time.Minute)
	newest := 0
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return
		default:
		}
		code, body := get(node, host, "/")
		m := releaseAnswer.FindStringSubmatch(body)
		p.mu.Lock()
		if code != 200 || m == nil {
			p.failures = append(p.failures, fmt.Sprintf("%d %q", code, body))
		} else {
			n, _ := strconv.Atoi(m[1])
			if n < newest {
				p.flips = append(p.flips, fmt.Sprintf("v%d after v%d (request %d)", n, newest, len(p.seen)))
			}
			newest = max(newest, n)
			p.seen = append(p.seen, n)
		}
		p.mu.Unlock()
	}
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

	kept := newKeptConn(node, host)
	if n, _, err := kept.get(); err != nil || n != 2 {
		t.Fatalf("GET / on a kept connection: release %d, %v; want 2", n, err)
	}

	// Redeploys under a poller on fresh connections: no reload (the kept
	// connection survives each), no failed request, never an older
	// release after a newer one.
	var p poller
	stop, done := make(chan struct{}), make(chan struct{})
	go p.run(node, host, stop, done)
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

// compact is a run-length summary of releases: [2 2 2 3 3] -> "v2×3 v3×2".
func compact(seen []int) string {
	var b strings.Builder
	for i := 0; i < len(seen); {
		j := i
		for j < len(seen) && seen[j] == seen[i] {
			j++
		}
		fmt.Fprintf(&b, "v%d×%d ", seen[i], j-i)
		i = j
	}
	return strings.TrimSpace(b.String())
}
