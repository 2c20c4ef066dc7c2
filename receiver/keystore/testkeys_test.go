package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Key kinds understood by newTestKey.
const (
	kindED25519   = "ed25519"
	kindECDSA256  = "ecdsa256"
	kindECDSA384  = "ecdsa384"
	kindECDSA521  = "ecdsa521"
	kindRSA2048   = "rsa2048"
	kindRSA1024   = "rsa1024"
	kindSKED25519 = "sk-ed25519"
	kindSKECDSA   = "sk-ecdsa"
	kindCert      = "cert"
)

// rsaCache keeps RSA generation (slow) to once per size per test binary.
var rsaCache sync.Map // bits -> *rsa.PrivateKey

// newTestKey returns a freshly generated public key of the given kind.
func newTestKey(t testing.TB, kind string) ssh.PublicKey {
	t.Helper()
	var pub crypto.PublicKey
	switch kind {
	case kindED25519:
		pub = newED25519(t).Public()
	case kindECDSA256:
		pub = newECDSA(t, elliptic.P256()).Public()
	case kindECDSA384:
		pub = newECDSA(t, elliptic.P384()).Public()
	case kindECDSA521:
		pub = newECDSA(t, elliptic.P521()).Public()
	case kindRSA2048:
		pub = cachedRSA(t, 2048).Public()
	case kindRSA1024:
		pub = cachedRSA(t, 1024).Public()
	case kindSKED25519:
		return parseWire(t, ssh.Marshal(struct {
			Type, Key, Application string
		}{ssh.KeyAlgoSKED25519, string(newED25519(t).Public().(ed25519.PublicKey)), "ssh:"}))
	case kindSKECDSA:
		point, err := newECDSA(t, elliptic.P256()).PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return parseWire(t, ssh.Marshal(struct {
			Type, Curve, Point, Application string
		}{ssh.KeyAlgoSKECDSA256, "nistp256", string(point), "ssh:"}))
	case kindCert:
		return newTestCert(t)
	default:
		t.Fatalf("newTestKey: unknown kind %q", kind)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sshPub
}

// authorizedLine returns pub as an authorized_keys line with a comment and
// no trailing newline.
func authorizedLine(pub ssh.PublicKey, comment string) string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n")
	if comment != "" {
		line += " " + comment
	}
	return line
}

func newED25519(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func newECDSA(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func cachedRSA(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	if priv, ok := rsaCache.Load(bits); ok {
		return priv.(*rsa.PrivateKey)
	}
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	rsaCache.Store(bits, priv)
	return priv
}

func parseWire(t testing.TB, wire []byte) ssh.PublicKey {
	t.Helper()
	pub, err := ssh.ParsePublicKey(wire)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func newTestCert(t testing.TB) ssh.PublicKey {
	t.Helper()
	signer, err := ssh.NewSignerFromKey(newED25519(t))
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{
		Key:             newTestKey(t, kindED25519),
		CertType:        ssh.UserCert,
		KeyId:           "test",
		ValidPrincipals: []string{"git"},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	return cert
}

// dsaLine returns an authorized_keys line for an ssh-dss key. x/crypto can
// no longer parse DSA keys, so the wire form is built by hand; the numbers
// only need to look like a key, not be a real DSA group.
func dsaLine(comment string) string {
	n := func(v int64) *big.Int { return big.NewInt(v) }
	wire := ssh.Marshal(struct {
		Type       string
		P, Q, G, Y *big.Int
	}{dsaKeyType, n(23), n(11), n(4), n(8)})
	return dsaKeyType + " " + base64.StdEncoding.EncodeToString(wire) + " " + comment
}
