package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// selfSigned is a certificate for hosts (with an OCSP URL when ocsp) and
// its key, PEM.
func selfSigned(t testing.TB, ocsp bool, hosts ...string) (chain, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: hosts[0]},
		DNSNames:     hosts,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ocsp {
		tmpl.OCSPServer = []string{"http://ocsp.example.test"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

// liveCert stages and makes live a certificate for host in rt, as
// commit does, without nginx.
func liveCert(t *testing.T, rt Runtime, host string, ocsp bool) {
	t.Helper()
	chain, key := selfSigned(t, ocsp, host)
	id := agentapi.CertID(chain)
	if err := stageCert(rt, host, id, bytes.NewReader(append(chain, key...))); err != nil {
		t.Fatal(err)
	}
	if err := setLiveCert(filepath.Join(rt.CertsDir, host), id); err != nil {
		t.Fatal(err)
	}
}

func TestRenderNginxTLS(t *testing.T) {
	rt := SystemRuntime()
	rt.CertsDir = t.TempDir()
	liveCert(t, rt, "shop.example.test", false)
	liveCert(t, rt, "prev.shop.example.test", true)
	live := filepath.Join(rt.CertsDir, "shop.example.test", "live")
	acme := "location ^~ /.well-known/acme-challenge/ {\n        alias " + ChallengeDir + "/;"
	tests := []struct {
		name      string
		https     string
		prev      int
		host      string // the block looked at
		want      []string
		absent    []string
		redirects bool // host has a port-80 server of its own answering 308
	}{
		{"optional: both schemes in one block", "", 0, "shop.example.test",
			[]string{"listen 80;", "listen 443 ssl http2;", "listen [::]:443 ssl http2;", "ssl_certificate " + live + "/fullchain.pem;",
				"ssl_certificate_key " + live + "/key.pem;", "ssl_protocols TLSv1.2 TLSv1.3;", "ssl_session_tickets off;", acme},
			[]string{"Strict-Transport-Security", "return 308", "ssl_stapling"}, false},
		{"required: 308 and HSTS", HTTPSRequired, 0, "shop.example.test",
			[]string{"listen 443 ssl http2;", `add_header Strict-Transport-Security "max-age=31536000" always;`, acme},
			[]string{"listen 80;"}, true},
		{"off: HTTP only", HTTPSOff, 0, "shop.example.test",
			[]string{"listen 80;", acme}, []string{"443", "ssl_", "Strict-Transport-Security"}, false},
		{"prev host with its own certificate, stapled", "", 1, "prev.shop.example.test",
			[]string{"listen 443 ssl http2;", "ssl_stapling on;", "prev.shop.example.test/live/fullchain.pem"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := routeSpec(Location{Host: "shop.example.test"}, Location{Host: "other.example.test"})
			spec.HTTPS = tt.https
			conf, err := rt.instance("shop", "main").renderNginx(2, tt.prev, spec, false)
			if err != nil {
				t.Fatal(err)
			}
			blocks := strings.Split(conf, "\nserver {\n")[1:]
			var own []string
			for _, b := range blocks {
				if strings.Contains(b, "\n    server_name "+tt.host+";\n") {
					own = append(own, b)
				}
			}
			if want := map[bool]int{false: 1, true: 2}[tt.redirects]; len(own) != want {
				t.Fatalf("%d server blocks for %s, want %d:\n%s", len(own), tt.host, want, conf)
			}
			main := own[len(own)-1]
			if tt.redirects {
				r := own[0]
				for _, s := range []string{"listen 80;", "return 308 https://$host$request_uri;", acme} {
					if !strings.Contains(r, s) {
						t.Errorf("redirect server lacks %q:\n%s", s, r)
					}
				}
				if strings.Contains(r, "443") || strings.Contains(r, "uwsgi_pass") {
					t.Errorf("redirect server serves more than the redirect:\n%s", r)
				}
			}
			for _, s := range tt.want {
				if !strings.Contains(main, s) {
					t.Errorf("server block of %s lacks %q:\n%s", tt.host, s, main)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(main, s) {
					t.Errorf("server block of %s has %q:\n%s", tt.host, s, main)
				}
			}
			// A host without a certificate stays plain HTTP.
			other := serverBlock(conf, "other.example.test")
			if strings.Contains(other, "443") || !strings.Contains(other, "listen 80;") || !strings.Contains(other, acme) {
				t.Errorf("other.example.test (no certificate) is not plain HTTP with the ACME location:\n%s", other)
			}
			// The ACME location comes before the app's.
			if strings.Index(main, acme) > strings.Index(main, "location /") && strings.Contains(main, "location /") {
				t.Errorf("the ACME location follows an app location:\n%s", main)
			}
		})
	}
}

func TestStageCertRefuses(t *testing.T) {
	rt := Runtime{CertsDir: t.TempDir()}
	chain, key := selfSigned(t, false, "shop.example.test")
	_, otherKey := selfSigned(t, false, "shop.example.test")
	id := agentapi.CertID(chain)
	tests := []struct {
		name, host, id string
		upload         []byte
		want           string
	}{
		{"wrong key", "shop.example.test", id, append(append([]byte{}, chain...), otherKey...), "do not form a pair"},
		{"host not covered", "other.example.test", id, append(append([]byte{}, chain...), key...), "does not cover"},
		{"other chain", "shop.example.test", "0123456789abcdef", append(append([]byte{}, chain...), key...), "is not certificate"},
		{"garbage", "shop.example.test", id, []byte("hello"), "do not form a pair"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := stageCert(rt, tt.host, tt.id, bytes.NewReader(tt.upload))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("stageCert: %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("the error quotes the key: %v", err)
			}
			if _, err := os.Stat(filepath.Join(rt.CertsDir, tt.host, tt.id)); err == nil {
				t.Errorf("a refused certificate was staged")
			}
		})
	}
	if err := stageCert(rt, "shop.example.test", id, bytes.NewReader(append(chain, key...))); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(rt.CertsDir, "shop.example.test", id, "key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("staged key: %v, mode %v, want 0600", err, fi.Mode())
	}
	if err := unstageCert(rt, "shop.example.test", id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rt.CertsDir, "shop.example.test", id)); err == nil {
		t.Errorf("unstage left the certificate")
	}
}

// FuzzStageCert feeds arbitrary bytes as a `cert stage` upload: it never
// panics, never quotes a key in its error, and stages only a pair that
// covers the host and is the certificate named, with the key 0600.
func FuzzStageCert(f *testing.F) {
	chain, key := selfSigned(f, false, "shop.example.test")
	f.Add(append(append([]byte{}, chain...), key...))
	f.Add(chain)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		rt := Runtime{CertsDir: t.TempDir()}
		id := agentapi.CertID(chain)
		err := stageCert(rt, "shop.example.test", id, bytes.NewReader(data))
		staged := filepath.Join(rt.CertsDir, "shop.example.test", id)
		if err != nil {
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("the error quotes the key: %v", err)
			}
			if _, statErr := os.Stat(staged); statErr == nil {
				t.Fatal("a refused upload was staged")
			}
			return
		}
		fi, err := os.Stat(filepath.Join(staged, "key.pem"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("staged key: %v", err)
		}
	})
}
