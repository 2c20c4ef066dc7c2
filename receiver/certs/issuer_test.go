//go:build e2e

package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
)

func TestIssuerObtainsFromPebble(t *testing.T) {
	t.Parallel()
	ctx, logs := captureLogs(t)
	ca := startPebble(t, 0)
	store := NewStore(t.TempDir())
	cfg := IssuerConfig{Directory: ca.directory, Email: "ops@example.com", Roots: ca.roots}
	is, err := NewIssuer(cfg, store, ca.chal)
	if err != nil {
		t.Fatal(err)
	}
	c, err := is.Obtain(ctx, "app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	held, puts, removes, fetches := ca.chal.counts()
	if held != 0 || puts != 1 || removes != 1 || fetches == 0 {
		t.Errorf("challenge tokens: %d held after, %d put, %d removed, %d fetched by the CA; want 0, 1, 1, >0", held, puts, removes, fetches)
	}
	if c.Meta.Host != "app.example.com" || c.Meta.Source != SourceACME || c.Meta.Issuer == "" ||
		!c.Meta.NotAfter.After(time.Now().Add(80*24*time.Hour)) {
		t.Errorf("metadata %+v", c.Meta)
	}
	// The chain serves: it verifies to pebble's root, and the key is the leaf's.
	certs, err := certcrypto.ParsePEMBundle(c.Chain)
	if err != nil || len(certs) < 2 {
		t.Fatalf("chain: %d certificates, %v", len(certs), err)
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: "app.example.com", Roots: ca.issuing, Intermediates: inter}); err != nil {
		t.Errorf("issued chain does not verify: %v", err)
	}
	key, err := certcrypto.ParsePEMPrivateKey(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkKey(certs[0], key); err != nil {
		t.Error(err)
	}

	// The account is stored, 0600, and a new Issuer (a restarted receiver) reuses it.
	acct, err := store.Account()
	if err != nil || acct.URI == "" || acct.Directory != ca.directory || acct.Email != "ops@example.com" {
		t.Fatalf("stored account %+v, %v", acct, err)
	}
	for _, f := range []string{"account.key", "account.json"} {
		if fi, err := os.Stat(filepath.Join(store.acmeDir(), f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, fi.Mode(), err)
		}
	}
	is2, err := NewIssuer(cfg, store, ca.chal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := is2.Obtain(ctx, "www.example.com"); err != nil {
		t.Fatal(err)
	}
	again, err := store.Account()
	if err != nil || again.URI != acct.URI || !bytes.Equal(again.Key, acct.Key) {
		t.Errorf("the restarted issuer registered a new account: %s, want %s", again.URI, acct.URI)
	}

	// A changed contact updates the same account.
	cfg.Email = "certs@example.com"
	is3, err := NewIssuer(cfg, store, ca.chal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := is3.Obtain(ctx, "app.example.com"); err != nil {
		t.Fatal(err)
	}
	if a, _ := store.Account(); a.URI != acct.URI || a.Email != "certs@example.com" {
		t.Errorf("after an e-mail change the account is %s %s; want %s certs@example.com", a.URI, a.Email, acct.URI)
	}
	assertNoKeyLogged(t, logs.String())
}

// The CA is told to validate only once the spreader holds the token
// everywhere: when Put fails, the CA never fetches anything.
func TestIssuerStopsWhenSpreadingFails(t *testing.T) {
	t.Parallel()
	ctx, _ := captureLogs(t)
	ca, _, is := pebbleIssuer(t, 0)
	ca.chal.failPuts = errors.New("node web2: disk full")
	_, err := is.Obtain(ctx, "app.example.com")
	if err == nil || !strings.Contains(err.Error(), "placing the HTTP-01 token on the nodes") || !strings.Contains(err.Error(), "node web2: disk full") {
		t.Fatalf("Obtain with a failing spreader: %v", err)
	}
	if _, _, _, fetches := ca.chal.counts(); fetches != 0 {
		t.Errorf("the CA fetched %d challenges although the token was never placed", fetches)
	}
}

// Without acme_ca the pebble test CA is not trusted: the system roots apply.
func TestIssuerTrustsOnlyConfiguredRoots(t *testing.T) {
	t.Parallel()
	ctx, _ := captureLogs(t)
	ca := startPebble(t, 0)
	is, err := NewIssuer(IssuerConfig{Directory: ca.directory, Email: "ops@example.com"}, NewStore(t.TempDir()), ca.chal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := is.Obtain(ctx, "app.example.com"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Obtain from an untrusted CA: %v", err)
	}
}

// Hosts a public CA would refuse never reach the CA (none answers here).
func TestIssuerRefusesIneligibleHosts(t *testing.T) {
	is, err := NewIssuer(IssuerConfig{Directory: "https://ca.invalid/dir", Email: "ops@example.com"}, NewStore(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"app.localhost": "under .localhost", "10.0.0.1": "is an IP address", "intranet": "has no dot", "Bad_Host": "not a host name",
	} {
		if _, err := is.Obtain(context.Background(), host); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Obtain(%q): %v, want %q", host, err, want)
		}
	}
}

func TestNewIssuerRefusesBadSettings(t *testing.T) {
	tests := []struct {
		name string
		cfg  IssuerConfig
		want string
	}{
		{"no email", IssuerConfig{}, "acme_email is not set"},
		{"plain http", IssuerConfig{Directory: "http://ca.example/dir", Email: "a@b.c"}, "not an https:// URL"},
		{"no host", IssuerConfig{Directory: "https:///dir", Email: "a@b.c"}, "not an https:// URL"},
		{"roots not PEM", IssuerConfig{Email: "a@b.c", Roots: []byte("garbage")}, "acme_ca holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewIssuer(tt.cfg, NewStore(t.TempDir()), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
