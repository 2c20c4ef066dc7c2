package certs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestStoreAccount(t *testing.T) {
	s := NewStore(t.TempDir())
	if _, err := s.Account(); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("empty store: %v, want ErrNoAccount", err)
	}
	a := Account{Directory: "https://ca.example/dir", Email: "ops@example.com", URI: "https://ca.example/acct/1", Key: SecretPEM("-----BEGIN EC PRIVATE KEY-----\nx\n-----END EC PRIVATE KEY-----\n")}
	if err := s.SaveAccount(a); err != nil {
		t.Fatal(err)
	}
	got, err := s.Account()
	if err != nil || got.Directory != a.Directory || got.Email != a.Email || got.URI != a.URI || !bytes.Equal(got.Key, a.Key) {
		t.Fatalf("got %+v, %v", got, err)
	}
	js, err := os.ReadFile(filepath.Join(s.acmeDir(), "account.json"))
	if err != nil || bytes.Contains(js, []byte("PRIVATE KEY")) {
		t.Errorf("account.json holds the key or is unreadable (%v):\n%s", err, js)
	}
	assertModes(t, s.acmeDir(), map[string]fs.FileMode{".": 0o700, "account.key": 0o600, "account.json": 0o600})
}

func TestStoreCerts(t *testing.T) {
	s := NewStore(t.TempDir())
	if hosts, err := s.Hosts(); err != nil || len(hosts) != 0 {
		t.Fatalf("empty store: %v, %v", hosts, err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ca := newTestCA(t)
	chains, keys := map[string][]byte{}, map[string][]byte{}
	for _, h := range []string{"www.example.com", "app.example.com"} {
		chains[h], keys[h] = ca.issue(t, h)
		c := Cert{
			Meta:  Meta{Host: h, Source: SourceACME, Issuer: "Pebble", NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour), Renewed: now},
			Chain: chains[h],
			Key:   keys[h],
		}
		if err := s.Put(c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Get("app.example.com")
	if err != nil || !bytes.Equal(got.Chain, chains["app.example.com"]) || !bytes.Equal(got.Key, keys["app.example.com"]) ||
		!got.Meta.NotAfter.Equal(now.Add(90*24*time.Hour)) || got.Meta.Source != SourceACME {
		t.Fatalf("Get: %+v, %v", got.Meta, err)
	}
	assertModes(t, filepath.Join(s.dir, "certs", "app.example.com"), map[string]fs.FileMode{
		".": 0o700, "key.pem": 0o600, "fullchain.pem": 0o644, "meta.json": 0o600,
	})

	// A failed first attempt leaves metadata alone: listed, with its error.
	if err := s.SaveMeta(Meta{Host: "new.example.com", Source: SourceACME, LastError: "timeout", Failures: 1}); err != nil {
		t.Fatal(err)
	}
	if hosts, err := s.Hosts(); err != nil || strings.Join(hosts, " ") != "app.example.com new.example.com www.example.com" {
		t.Errorf("Hosts: %v, %v", hosts, err)
	}
	if _, err := s.Get("new.example.com"); err == nil {
		t.Error("Get of a host without a certificate succeeded")
	}

	// A key written without its certificate (a Put cut short) is never handed out.
	if err := os.WriteFile(filepath.Join(s.dir, "certs", "www.example.com", "key.pem"), keys["app.example.com"], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("www.example.com"); err == nil || !strings.Contains(err.Error(), "the stored key is not the stored certificate's") ||
		strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("Get of a mismatched pair: %v", err)
	}

	if err := s.Remove("www.example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Meta("www.example.com"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Remove: %v, want fs.ErrNotExist", err)
	}
	if err := s.Remove("www.example.com"); err != nil {
		t.Errorf("second Remove: %v", err)
	}

	for _, bad := range []string{"../etc", "a/b", "", ".", "UPPER.example.com"} {
		if err := s.Put(Cert{Meta: Meta{Host: bad}}); err == nil || !strings.Contains(err.Error(), "not a host name") {
			t.Errorf("Put(%q): %v", bad, err)
		}
	}
}

func assertModes(t *testing.T, dir string, want map[string]fs.FileMode) {
	t.Helper()
	for name, mode := range want {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
}

// A key reaching fmt, zerolog or JSON by mistake prints as a placeholder.
func TestSecretPEMNeverPrints(t *testing.T) {
	k := SecretPEM("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n")
	c := Cert{Meta: Meta{Host: "app.example.com"}, Key: k}
	var logs bytes.Buffer
	logger := zerolog.New(&logs)
	logger.Info().Interface("cert", c).Stringer("key", k).Msg("oops")
	js, _ := json.Marshal(c)
	outs := []string{
		fmt.Sprint(k), fmt.Sprintf("%s %v %+v %#v %x %q", k, k, c, c, k, k), fmt.Errorf("wrapped %v", k).Error(),
		logs.String(), string(js),
	}
	for _, out := range outs {
		if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "secret") {
			t.Errorf("the key shows: %s", out)
		}
	}
	if !bytes.Equal(k.Bytes(), []byte(k)) {
		t.Error("Bytes does not return the key")
	}
}
