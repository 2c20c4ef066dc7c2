//go:build e2e || bench

package main_test

// Clients that watch a release switch from outside: a poller on fresh
// connections (is the switch monotonic?) and a kept keep-alive connection
// (did nginx reload?). The e2e test of the switch and `make bench` share them.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
)

// releaseOf reads the release an answer's body names.
type releaseOf func(body string) (int, bool)

// keptConn is an HTTP client with one keep-alive connection to a node.
type keptConn struct {
	node    *testbed.Node
	host    string
	release releaseOf
	client  *http.Client
}

func newKeptConn(node *testbed.Node, host string, release releaseOf) *keptConn {
	return &keptConn{node: node, host: host, release: release, client: &http.Client{
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
	n, ok := k.release(string(body))
	if resp.StatusCode != 200 || !ok {
		return 0, reused, fmt.Errorf("%d %q", resp.StatusCode, body)
	}
	return n, reused, nil
}

// poller requests / on fresh connections, one after another, recording
// which release answered each.
type poller struct {
	mu       sync.Mutex
	seen     []int
	failures []string
	flips    []string // an older release answering after a newer one had
}

// run polls until stop is closed (or for at most 10 minutes), then closes done.
func (p *poller) run(node *testbed.Node, host string, release releaseOf, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	deadline := time.Now().Add(10 * time.Minute)
	newest := 0
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return
		default:
		}
		code, body := get(node, host, "/")
		n, ok := release(body)
		p.mu.Lock()
		if code != 200 || !ok {
			p.failures = append(p.failures, fmt.Sprintf("%d %q", code, body))
		} else {
			if n < newest {
				p.flips = append(p.flips, fmt.Sprintf("v%d after v%d (request %d)", n, newest, len(p.seen)))
			}
			newest = max(newest, n)
			p.seen = append(p.seen, n)
		}
		p.mu.Unlock()
	}
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
