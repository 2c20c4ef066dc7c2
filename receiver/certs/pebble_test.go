//go:build e2e

package certs

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// pebbleCA is a real ACME server (pebble, in process) on loopback, whose
// validation authority resolves every name to 127.0.0.1 through an in-test
// DNS server and fetches HTTP-01 answers from the test's challengeServer.
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
	logger := log.New(io.Discard, "pebble ", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: validity},
	})
	validator := va.New(logger, chal.port, 0, false, startDNS(t), store)
	// Retry-After 1 s (the least there is) on authorizations and orders:
	// without one lego polls every 5 s.
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 1, 1)
	srv := httptest.NewUnstartedServer(front.Handler())
	srv.Config.ErrorLog = logger // the handshake a test refuses on purpose is not news
	srv.StartTLS()
	t.Cleanup(srv.Close)

	issuing := x509.NewCertPool()
	issuing.AddCert(authority.GetRootCert(0).Cert)
	return &pebbleCA{
		directory: srv.URL + wfe.DirectoryPath,
		roots:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
		issuing:   issuing,
		chal:      chal,
	}
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

// startDNS answers every A question with 127.0.0.1 and every other one with
// nothing, over TCP (pebble's VA asks over TCP).
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
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
