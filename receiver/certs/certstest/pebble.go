//go:build e2e || bench

// Package certstest runs a real ACME server for tests: Let's Encrypt's
// pebble, in process, on loopback, with an in-test DNS server that makes
// test host names resolve where the test wants HTTP-01 answers fetched.
package certstest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Pebble is a running pebble.
type Pebble struct {
	// Directory is the ACME directory URL (acme_directory).
	Directory string
	// Roots is the ACME server's own TLS root, PEM: what acme_ca holds.
	Roots []byte
	// Issuing holds the root the certificates pebble issues chain to.
	Issuing *x509.CertPool
}

// Options of a pebble.
type Options struct {
	// Validity is how long its certificates last, seconds (0: 90 days).
	Validity uint64
	// HTTPPort is where its validation authority fetches HTTP-01 answers.
	HTTPPort int
	// Resolve answers the A question for a name (fully qualified, with
	// its final dot); nil or no address: no answer.
	Resolve func(name string) []net.IP
}

// SetEnv sets what pebble reads from the environment, once for the whole
// test binary (call it from TestMain): no random sleeps before
// validating, no rejected nonces, no reused authorizations. Pebble's
// deliberate flakiness is for clients' retry code, which lego has and
// these tests are not about.
func SetEnv() {
	for k, v := range map[string]string{"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"} {
		if err := os.Setenv(k, v); err != nil {
			panic(err)
		}
	}
}

// Start starts pebble for the test's lifetime.
func Start(t testing.TB, o Options) *Pebble {
	t.Helper()
	logger := log.New(io.Discard, "pebble ", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: o.Validity},
	})
	validator := va.New(logger, o.HTTPPort, 0, false, startDNS(t, o.Resolve), store)
	// Retry-After 1 s (the least there is) on authorizations and orders:
	// without one lego polls every 5 s.
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 1, 1)
	srv := httptest.NewUnstartedServer(front.Handler())
	srv.Config.ErrorLog = logger // the handshake a test refuses on purpose is not news
	srv.StartTLS()
	t.Cleanup(srv.Close)

	issuing := x509.NewCertPool()
	issuing.AddCert(authority.GetRootCert(0).Cert)
	return &Pebble{
		Directory: srv.URL + wfe.DirectoryPath,
		Roots:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
		Issuing:   issuing,
	}
}

// startDNS answers A questions with resolve's addresses and every other
// one with nothing, over TCP (pebble's VA asks over TCP).
func startDNS(t testing.TB, resolve func(string) []net.IP) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype != dns.TypeA || resolve == nil {
				continue
			}
			for _, ip := range resolve(question.Name) {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   ip,
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// Client speaks HTTPS to the server at ip with SNI host, trusting only
// roots, on a fresh connection per request, without following redirects.
func Client(ip, host string, roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(ip, "443"))
			},
			TLSClientConfig: &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Get is GET https://host/ from the server at ip: status, body and the
// serial of the certificate served, which must cover host and chain to
// roots; err is a failed connection or handshake.
func Get(ip, host string, roots *x509.CertPool) (code int, header http.Header, body, serial string, err error) {
	resp, err := Client(ip, host, roots).Get("https://" + host + "/")
	if err != nil {
		return 0, nil, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	leaf := resp.TLS.PeerCertificates[0]
	if err := leaf.VerifyHostname(host); err != nil {
		return 0, nil, "", "", err
	}
	return resp.StatusCode, resp.Header, string(b), leaf.SerialNumber.String(), nil
}
