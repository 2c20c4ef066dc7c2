//go:build e2e

package certs

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gitreceive/gitreceive/receiver/certs/certstest"
)

// pebbleCA is a real ACME server (pebble, in process) on loopback, whose
// validation authority resolves every name to 127.0.0.1 and fetches
// HTTP-01 answers from the test's challengeServer.
type pebbleCA struct {
	directory string
	roots     []byte // the ACME server's TLS root, PEM: what acme_ca would hold
	issuing   *x509.CertPool
	chal      *challengeServer
}

// startPebble starts pebble issuing certificates valid for validity seconds
// (0: pebble's default, 90 days).
func startPebble(t *testing.T, validity uint64) *pebbleCA {
	t.Helper()
	chal := newChallengeServer(t)
	p := certstest.Start(t, certstest.Options{Validity: validity, HTTPPort: chal.port,
		Resolve: func(string) []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1)} }})
	return &pebbleCA{directory: p.Directory, roots: p.Roots, issuing: p.Issuing, chal: chal}
}

// pebbleIssuer is an Issuer with a Store of its own for a new pebble
// issuing certificates valid for validity seconds.
func pebbleIssuer(t *testing.T, validity uint64) (*pebbleCA, *Store, *Issuer) {
	t.Helper()
	ca := startPebble(t, validity)
	store := NewStore(t.TempDir())
	is, err := NewIssuer(IssuerConfig{Directory: ca.directory, Email: "ops@example.com", Roots: ca.roots}, store, ca.chal)
	if err != nil {
		t.Fatal(err)
	}
	return ca, store, is
}

// challengeServer is the test's ChallengeSpreader and the web server the CA
// validates against: it serves what Put stored, as a node's nginx serves the
// webroot the receiver writes to.
type challengeServer struct {
	port int

	mu       sync.Mutex
	tokens   map[string]string
	puts     int
	removes  int
	fetches  int
	failPuts error
}

func newChallengeServer(t *testing.T) *challengeServer {
	t.Helper()
	c := &challengeServer{tokens: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		c.mu.Lock()
		c.fetches++
		keyAuth, held := c.tokens[token]
		c.mu.Unlock()
		if !ok || !held {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, keyAuth)
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	c.port, _ = strconv.Atoi(port)
	return c
}

func (c *challengeServer) Put(_ context.Context, token, keyAuth string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.puts++
	if c.failPuts != nil {
		return c.failPuts
	}
	c.tokens[token] = keyAuth
	return nil
}

func (c *challengeServer) Remove(_ context.Context, token string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removes++
	delete(c.tokens, token)
	return nil
}

func (c *challengeServer) counts() (held, puts, removes, fetches int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tokens), c.puts, c.removes, c.fetches
}

// assertNoKeyLogged scans a test's log and lego's for keys.
func assertNoKeyLogged(t *testing.T, logs string) {
	t.Helper()
	all := logs + legoLogs.String()
	if strings.Contains(all, "PRIVATE KEY") {
		t.Errorf("a private key reached the log:\n%s", all)
	}
	if !strings.Contains(legoLogs.String(), "level") {
		t.Errorf("nothing was logged; the scan for keys saw nothing:\n%s", all)
	}
}
