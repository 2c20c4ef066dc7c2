//go:build bench

package main_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/receiver/certs/certstest"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// benchHTTPS (issue 19): on 1 and 4 test-bed nodes, with pebble as the
// CA, the time from a small app's first `git push` to HTTPS answering with
// its certificate on every node; then a one-file change while 4 clients
// request it over HTTPS (a fresh TLS connection each): every failed
// request is counted and fails the run.
func benchHTTPS(t *testing.T, tb *benchTable) {
	certstest.SetEnv()
	var mu sync.Mutex
	var targets []*testbed.Node // the nodes the CA's DNS answers with
	ca := certstest.Start(t, certstest.Options{HTTPPort: 80, Resolve: func(string) []net.IP {
		mu.Lock()
		defer mu.Unlock()
		var ips []net.IP
		for _, n := range targets {
			ips = append(ips, net.ParseIP(n.IP))
		}
		return ips
	}})
	caFile := filepath.Join(t.TempDir(), "acme-ca.pem")
	if err := os.WriteFile(caFile, ca.Roots, 0o600); err != nil {
		t.Fatal(err)
	}
	f, bed := fanOutBed(t, "bh", "10.77.249.0/24", 4, "GITRECEIVE_DOMAIN=example.test", "GITRECEIVE_ACME_EMAIL=ops@example.test",
		"GITRECEIVE_ACME_DIRECTORY="+ca.Directory, "GITRECEIVE_ACME_CA="+caFile)
	runs := benchRuns(t)
	fmt.Printf("\nHTTPS (pebble): git push start -> HTTPS answering on every node, median of %d\n", runs)
	fmt.Printf("%-6s %16s %16s %22s %8s\n", "nodes", "first push", "one-file change", "HTTPS requests", "failed")
	for _, k := range []int{1, 4} {
		useNodes(t, f, bed.Nodes[:k], bed.Nodes)
		mu.Lock()
		targets = bed.Nodes[:k]
		mu.Unlock()
		var first, one []time.Duration
		var requests int64
		var failed []string
		for i := 0; i < runs; i++ {
			app := fmt.Sprintf("tls%d-%d", k, i)
			host := app + ".example.test"
			work := f.alice.WorkTree(t, receivertest.App(app, page("first")))
			first = append(first, pushToHTTPS(t, f, ca, work, app, bed.Nodes[:k], host, "first"))

			f.alice.Commit(t, work, "one file", page("second"))
			d, n, fails := duringLoad(func(stop <-chan struct{}) (int64, []string) { return httpsLoad(ca, bed.Nodes[:k], host, 4, stop) },
				func() time.Duration { return pushToHTTPS(t, f, ca, work, app, bed.Nodes[:k], host, "second") })
			one = append(one, d)
			requests += n
			failed = append(failed, fails...)
		}
		fmt.Printf("%-6d %16s %16s %22d %8d\n", k, median(first).Round(time.Millisecond), median(one).Round(time.Millisecond), requests, len(failed))
		nodesName := nodeCount(k)
		tb.add("7. HTTPS: first push of a small app to HTTPS answering, "+nodesName, ms(median(first)), "", "", "",
			"`git push` start to HTTPS answering with the app's own certificate (pebble in process, verified with its root and SNI) on every node: "+
				"build, deploy, then HTTP-01 tokens on every node, the CA's validation, the certificate staged, nginx -t and switched on every node; the push does it for HOST and prev.HOST")
		tb.add("7. HTTPS: one-file change under HTTPS load, "+nodesName, ms(median(one)), "", "", "0 failed requests",
			fmt.Sprintf("%d HTTPS requests (4 clients, a fresh TLS connection each) during the %d switches, %d failed", requests, runs, len(failed)))
		if len(failed) > 0 {
			t.Errorf("%d HTTPS requests failed during switches, e.g. %v", len(failed), failed[:min(3, len(failed))])
		}
	}
	fmt.Println("target: 0 failed requests")
}

// pushToHTTPS pushes work and returns the time until every node answers
// https://host/ with marker.
func pushToHTTPS(t *testing.T, f *fixture, ca *certstest.Pebble, work, app string, targets []*testbed.Node, host, marker string) time.Duration {
	t.Helper()
	start := time.Now()
	r := f.alice.MustGit(t, work, "push", "-q", f.alice.URL(app), "main")
	if strings.Contains(r.Stderr, "pending") {
		t.Fatalf("push of %s: the certificate is pending:\n%s", app, r.Stderr)
	}
	for _, n := range targets {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if code, _, body, _, err := certstest.Get(n.IP, host, ca.Issuing); err == nil && code == 200 && body == marker {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never answered %q for https://%s/", n.Name, marker, host)
			}
		}
	}
	return time.Since(start)
}

// httpsLoad is load over HTTPS, verified with the CA's root and SNI.
func httpsLoad(ca *certstest.Pebble, nodes []*testbed.Node, host string, clients int, stop <-chan struct{}) (int64, []string) {
	return loadWith(nodes, clients, 0, stop, func(n *testbed.Node) (int, string) {
		code, _, body, _, err := certstest.Get(n.IP, host, ca.Issuing)
		if err != nil {
			return 0, err.Error()
		}
		return code, body
	})
}
