package certs

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/names"
)

// Bundle is an operator's certificate after CheckBundle: the chain as it
// will be served (leaf first, without any self-signed root) and the key.
type Bundle struct {
	Leaf  *x509.Certificate
	Chain []byte
	Key   SecretPEM
}

// maxBundle bounds what CheckBundle reads: a chain of a few certificates
// and a key is a few kilobytes.
const maxBundle = 1 << 20

// CheckBundle parses an operator's PEM bundle (the certificate chain, leaf
// first, and its private key, in any order) for host at time now, and
// refuses it with one sentence saying what is wrong and what to do: no
// certificate or key, a key that is not the leaf's, a chain that does not
// lead from the leaf through the given intermediates to a root (the system
// roots, or a self-signed root in the bundle), a leaf that does not cover
// host, or one that is expired or not yet valid. Error messages never
// contain key material.
func CheckBundle(data []byte, host string, now time.Time) (*Bundle, error) {
	if len(data) > maxBundle {
		return nil, fmt.Errorf("the bundle is over %d bytes; send only the certificate chain and its key, PEM", maxBundle)
	}
	certs, key, err := parseBundle(data)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if err := checkKey(leaf, key); err != nil {
		return nil, err
	}
	if err := checkValidity(leaf, now); err != nil {
		return nil, err
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return nil, fmt.Errorf("the certificate does not cover host %s (it names %s); send one whose names include it", names.Show(host), describeNames(leaf))
	}
	chain, err := verifyChain(certs, now)
	if err != nil {
		return nil, err
	}
	keyPEM, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("the private key cannot be stored: %w", err)
	}
	return &Bundle{Leaf: leaf, Chain: chain, Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyPEM})}, nil
}

// parseBundle reads every PEM block: certificates in order, exactly one
// private key. Anything else is refused, so a mixed-up paste is seen.
func parseBundle(data []byte) ([]*x509.Certificate, crypto.Signer, error) {
	var certs []*x509.Certificate
	var key crypto.Signer
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("PEM block %d is not a readable certificate (%v); send the chain as PEM", n, err)
			}
			certs = append(certs, c)
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			if key != nil {
				return nil, nil, errors.New("the bundle holds more than one private key; send only the key of the certificate")
			}
			k, err := parsePrivateKey(block)
			if err != nil {
				return nil, nil, fmt.Errorf("PEM block %d: %w", n, err)
			}
			key = k
		default:
			return nil, nil, fmt.Errorf("PEM block %d is a %s, not a certificate or a private key; send only the chain and its key", n, names.Show(block.Type))
		}
	}
	if len(bytes.TrimSpace(rest)) > 0 && (len(certs) > 0 || key != nil) {
		return nil, nil, errors.New("the bundle has text after its last PEM block that is not PEM; send only the chain and its key")
	}
	if len(certs) == 0 {
		return nil, nil, errors.New("the bundle holds no certificate; send the certificate chain (leaf first) and its private key, PEM")
	}
	if key == nil {
		return nil, nil, errors.New("the bundle holds no private key; append the certificate's private key, PEM, unencrypted")
	}
	return certs, key, nil
}

func parsePrivateKey(block *pem.Block) (crypto.Signer, error) {
	if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
		return nil, errors.New("the private key is encrypted; send it unencrypted (the receiver keeps it 0600)")
	}
	var k any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("a %s is not a key type the receiver reads; send an RSA, ECDSA or Ed25519 key", names.Show(block.Type))
	}
	if err != nil {
		// The parser's message names the ASN.1 structure, never the key's bytes.
		return nil, fmt.Errorf("the private key is not readable (%v)", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("the private key cannot sign; send an RSA, ECDSA or Ed25519 key")
	}
	return signer, nil
}

func checkKey(leaf *x509.Certificate, key crypto.Signer) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return fmt.Errorf("the private key does not belong to the certificate for %s (the first certificate in the bundle); send the key it was issued for", describeNames(leaf))
	}
	return nil
}

func checkValidity(leaf *x509.Certificate, now time.Time) error {
	const day = "2006-01-02 15:04 UTC"
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("the certificate for %s expired at %s; send a current one", describeNames(leaf), leaf.NotAfter.UTC().Format(day))
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("the certificate for %s is not valid before %s; send it then, or check this machine's clock", describeNames(leaf), leaf.NotBefore.UTC().Format(day))
	}
	return nil
}

// verifyChain checks leaf -> intermediates -> root and returns the chain to
// serve: the bundle's certificates without self-signed roots, PEM. A root
// may come with the bundle (a private CA) or from the system's roots.
func verifyChain(certs []*x509.Certificate, now time.Time) ([]byte, error) {
	leaf := certs[0]
	intermediates := x509.NewCertPool()
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	serve := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	for _, c := range certs[1:] {
		if isSelfSigned(c) {
			roots.AddCert(c)
			continue
		}
		intermediates.AddCert(c)
		serve = append(serve, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Intermediates: intermediates,
		Roots:         roots,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("the certificate chain does not verify (%v); put the leaf first, then its intermediates, and add the root if it is a private CA", err)
	}
	return serve, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func describeNames(c *x509.Certificate) string {
	var all []string
	all = append(all, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		all = append(all, ip.String())
	}
	if len(all) == 0 && c.Subject.CommonName != "" {
		all = append(all, c.Subject.CommonName)
	}
	if len(all) == 0 {
		return "no host"
	}
	if len(all) > 5 {
		all = append(all[:5], fmt.Sprintf("and %d more", len(all)-5))
	}
	for i, n := range all {
		all[i] = names.Show(n)
	}
	return strings.Join(all, ", ")
}
