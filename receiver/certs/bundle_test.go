package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// testCA is a private CA made in the test: root -> intermediate -> leaves.
type testCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
}

var serial int64

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	now := time.Now()
	ca := &testCA{rootKey: mustKey(t), interKey: mustKey(t)}
	rootTmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "test root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	ca.root = sign(t, rootTmpl, rootTmpl, ca.rootKey.Public(), ca.rootKey)
	ca.inter = sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test intermediate"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, ca.root, ca.interKey.Public(), ca.rootKey)
	return ca
}

func (ca *testCA) leaf(t testing.TB, key crypto.Signer, notBefore, notAfter time.Time, dnsNames ...string) *x509.Certificate {
	t.Helper()
	return sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: dnsNames[0]}, DNSNames: dnsNames, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca.inter, key.Public(), ca.interKey)
}

func certPEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func keyPEM(t testing.TB, key crypto.Signer, typ string) []byte {
	t.Helper()
	var der []byte
	var err error
	switch typ {
	case "EC PRIVATE KEY":
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	case "RSA PRIVATE KEY":
		der = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	default:
		der, err = x509.MarshalPKCS8PrivateKey(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestCheckBundle(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	key, other := mustKey(t), mustKey(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := ca.leaf(t, key, now.Add(-time.Hour), now.Add(30*24*time.Hour), "app.example.com", "www.example.com")
	wild := ca.leaf(t, key, now.Add(-time.Hour), now.Add(30*24*time.Hour), "*.example.com")
	expired := ca.leaf(t, key, now.Add(-48*time.Hour), now.Add(-time.Hour), "app.example.com")
	future := ca.leaf(t, key, now.Add(time.Hour), now.Add(48*time.Hour), "app.example.com")
	rsaLeaf := ca.leaf(t, rsaKey, now.Add(-time.Hour), now.Add(30*24*time.Hour), "app.example.com")
	selfTmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "app.example.com"}, DNSNames: []string{"app.example.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	self := sign(t, selfTmpl, selfTmpl, key.Public(), key)
	pk8 := keyPEM(t, key, "PRIVATE KEY")

	tests := []struct {
		name string
		data []byte
		host string
		want string // "" = accepted
	}{
		{"chain, root and key", cat(certPEM(valid, ca.inter, ca.root), pk8), "app.example.com", ""},
		{"key first, SEC 1", cat(keyPEM(t, key, "EC PRIVATE KEY"), certPEM(valid, ca.inter, ca.root)), "www.example.com", ""},
		{"RSA PKCS#1 key", cat(certPEM(rsaLeaf, ca.inter, ca.root), keyPEM(t, rsaKey, "RSA PRIVATE KEY")), "app.example.com", ""},
		{"wildcard covers one label", cat(certPEM(wild, ca.inter, ca.root), pk8), "shop.example.com", ""},
		{"wildcard does not cover the apex", cat(certPEM(wild, ca.inter, ca.root), pk8), "example.com", `does not cover host "example.com" (it names "*.example.com")`},
		{"wildcard does not cover two labels", cat(certPEM(wild, ca.inter, ca.root), pk8), "a.b.example.com", "does not cover host"},
		{"host not covered", cat(certPEM(valid, ca.inter, ca.root), pk8), "other.example.com", `does not cover host "other.example.com" (it names "app.example.com", "www.example.com")`},
		{"wrong key", cat(certPEM(valid, ca.inter, ca.root), keyPEM(t, other, "PRIVATE KEY")), "app.example.com", "the private key does not belong to the certificate"},
		{"expired", cat(certPEM(expired, ca.inter, ca.root), pk8), "app.example.com", "expired at"},
		{"not yet valid", cat(certPEM(future, ca.inter, ca.root), pk8), "app.example.com", "is not valid before"},
		{"intermediate missing", cat(certPEM(valid, ca.root), pk8), "app.example.com", "the certificate chain does not verify"},
		{"private root not given", cat(certPEM(valid, ca.inter), pk8), "app.example.com", "the certificate chain does not verify"},
		{"self-signed leaf", cat(certPEM(self), pk8), "app.example.com", "the certificate chain does not verify"},
		{"leaf not first", cat(certPEM(ca.inter, valid, ca.root), pk8), "app.example.com", "the private key does not belong"},
		{"garbage", []byte("hello, this is not PEM\n"), "app.example.com", "holds no certificate"},
		{"empty", nil, "app.example.com", "holds no certificate"},
		{"key only", pk8, "app.example.com", "holds no certificate"},
		{"no key", certPEM(valid, ca.inter, ca.root), "app.example.com", "holds no private key"},
		{"two keys", cat(certPEM(valid, ca.inter, ca.root), pk8, pk8), "app.example.com", "more than one private key"},
		{"encrypted key", cat(certPEM(valid, ca.inter, ca.root), pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})), "app.example.com", "encrypted"},
		{"broken key", cat(certPEM(valid, ca.inter, ca.root), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})), "app.example.com", "the private key is not readable"},
		{"broken certificate", cat(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), pk8), "app.example.com", "PEM block 1 is not a readable certificate"},
		{"other block", cat(certPEM(valid, ca.inter, ca.root), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}}), pk8), "app.example.com", `PEM block 4 is a "CERTIFICATE REQUEST"`},
		{"trailing text", cat(certPEM(valid, ca.inter, ca.root), pk8, []byte("oops")), "app.example.com", "text after its last PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := CheckBundle(tt.data, tt.host, now)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				// Served: leaf and intermediate, never the root; key normalized to PKCS#8.
				got, err := parseCertsOnly(b.Chain)
				if err != nil || len(got) != 2 || !got[0].Equal(b.Leaf) || !got[1].Equal(ca.inter) {
					t.Errorf("served chain: %d certificates, %v", len(got), err)
				}
				if !bytes.HasPrefix(b.Key, []byte("-----BEGIN PRIVATE KEY-----")) {
					t.Errorf("stored key is not PKCS#8 PEM")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), string(pk8[30:60])) {
				t.Errorf("the error shows PEM or key material: %v", err)
			}
		})
	}
}

// parseCertBlocks returns data's readable certificates, skipping the rest.
func parseCertBlocks(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if c, err := x509.ParseCertificate(block.Bytes); block.Type == "CERTIFICATE" && err == nil {
			out = append(out, c)
		}
	}
}

func parseCertsOnly(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

func TestCheckBundleRefusesHugeInput(t *testing.T) {
	_, err := CheckBundle(make([]byte, maxBundle+1), "app.example.com", time.Now())
	if err == nil || !strings.Contains(err.Error(), "is over") {
		t.Fatalf("got %v", err)
	}
}

// FuzzCheckBundle: any input is refused with an error or accepted as a
// bundle whose served chain covers host, starts with the leaf and is
// matched by the key; nothing panics.
func FuzzCheckBundle(f *testing.F) {
	ca := newTestCA(f)
	now := time.Now()
	key := mustKey(f)
	leaf := ca.leaf(f, key, now.Add(-time.Hour), now.Add(24*time.Hour), "app.example.com", "*.example.org")
	pk8 := keyPEM(f, key, "PRIVATE KEY")
	f.Add(cat(certPEM(leaf, ca.inter, ca.root), pk8), "app.example.com")
	f.Add(cat(keyPEM(f, key, "EC PRIVATE KEY"), certPEM(leaf, ca.inter, ca.root)), "x.example.org")
	f.Add(certPEM(leaf), "example.org")
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "a.b")
	f.Fuzz(func(t *testing.T, data []byte, host string) {
		b, err := CheckBundle(data, host, now)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := b.Leaf.VerifyHostname(host); err != nil {
			t.Fatalf("accepted a bundle that does not cover %q: %v", host, err)
		}
		served, err := parseCertsOnly(b.Chain)
		if err != nil || len(served) == 0 || !served[0].Equal(b.Leaf) {
			t.Fatalf("accepted bundle serves %d certificates, %v", len(served), err)
		}
		// The stored form (chain without roots, PKCS#8 key) passes again with
		// the roots the input brought (the seeds' CA differs per fuzz worker).
		var roots []*x509.Certificate
		for _, c := range parseCertBlocks(data) {
			if isSelfSigned(c) {
				roots = append(roots, c)
			}
		}
		if _, err := CheckBundle(cat(b.Chain, certPEM(roots...), b.Key), host, now); err != nil {
			t.Fatalf("an accepted bundle, as stored, is refused: %v", err)
		}
	})
}

// issue makes a certificate for host as the Store keeps one: leaf and
// intermediate, PKCS#8 key.
func (ca *testCA) issue(t testing.TB, host string) (chain, key []byte) {
	t.Helper()
	k := mustKey(t)
	now := time.Now()
	return certPEM(ca.leaf(t, k, now.Add(-time.Hour), now.Add(24*time.Hour), host), ca.inter), keyPEM(t, k, "PRIVATE KEY")
}
