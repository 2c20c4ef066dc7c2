package certs

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"

	"github.com/gitreceive/gitreceive/names"
)

// DefaultDirectory is the CA the receiver uses when acme_directory is unset:
// Let's Encrypt production.
const DefaultDirectory = lego.DirectoryURLLetsEncrypt

// ChallengeSpreader places HTTP-01 answers where the CA will look for them:
// the receiver writes each token to every app node of the instance (a
// root-owned webroot nginx serves at /.well-known/acme-challenge/) and
// returns from Put only when every node holds it, so the CA, validating from
// several places against round-robin DNS, finds it on whichever node it
// reaches. Put failing on any node must leave none holding it.
type ChallengeSpreader interface {
	Put(ctx context.Context, token, keyAuth string) error
	Remove(ctx context.Context, token string) error
}

// IssuerConfig is the receiver's ACME settings.
type IssuerConfig struct {
	// Directory is the CA's RFC 8555 directory URL (acme_directory);
	// empty means DefaultDirectory.
	Directory string
	// Email is the account's contact (acme_email); required.
	Email string
	// Roots is a PEM file's contents (acme_ca): the roots to trust for the
	// directory instead of the system's, for a private CA. Empty: the
	// system roots, which SSL_CERT_FILE in the environment also moves.
	Roots []byte
}

// Issuer obtains certificates from an ACME CA with lego: it registers an
// account once per directory (kept in the Store and reused), and proves each
// host over HTTP-01 through a ChallengeSpreader.
type Issuer struct {
	cfg      IssuerConfig
	store    *Store
	spreader ChallengeSpreader
	http     *http.Client

	mu     sync.Mutex // guards client
	client *lego.Client
}

// NewIssuer checks cfg; it does not talk to the CA yet.
func NewIssuer(cfg IssuerConfig, store *Store, spreader ChallengeSpreader) (*Issuer, error) {
	if cfg.Directory == "" {
		cfg.Directory = DefaultDirectory
	}
	u, err := url.Parse(cfg.Directory)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("acme_directory %s: not an https:// URL; set it to the CA's ACME directory URL", names.Show(cfg.Directory))
	}
	if cfg.Email == "" {
		return nil, errors.New("acme_email is not set; set it to the address the CA may write to about expiring certificates")
	}
	var roots *x509.CertPool
	if len(cfg.Roots) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(cfg.Roots) {
			return nil, errors.New("acme_ca holds no PEM certificate; set it to a file of the CA's root certificates, PEM")
		}
	}
	client := &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		},
	}
	return &Issuer{cfg: cfg, store: store, spreader: spreader, http: client}, nil
}

// Obtain gets a new certificate for host (one certificate per host) and
// returns it with its metadata; the caller installs and stores it. A host
// no public CA would accept (Eligible) is refused before the CA is asked.
func (is *Issuer) Obtain(ctx context.Context, host string) (Cert, error) {
	if !names.IsHost(host) {
		return Cert{}, fmt.Errorf("host %s: not a host name", names.Show(host))
	}
	if ok, why := Eligible(host); !ok {
		return Cert{}, errors.New(why)
	}
	client, err := is.acmeClient(ctx)
	if err != nil {
		return Cert{}, err
	}
	res, err := client.Certificate.Obtain(ctx, certificate.ObtainRequest{
		Domains: []string{host},
		KeyType: certcrypto.EC256,
		Bundle:  true,
	})
	if err != nil {
		return Cert{}, fmt.Errorf("host %s: the CA at %s did not issue a certificate: %w", host, is.cfg.Directory, err)
	}
	leaf, err := certcrypto.ParsePEMCertificate(res.Certificate)
	if err != nil {
		return Cert{}, fmt.Errorf("host %s: the CA's certificate is not readable: %w", host, err)
	}
	return Cert{
		Meta: Meta{
			Host:      host,
			Source:    SourceACME,
			Issuer:    leaf.Issuer.CommonName,
			NotBefore: leaf.NotBefore,
			NotAfter:  leaf.NotAfter,
		},
		Chain: res.Certificate,
		Key:   res.PrivateKey,
	}, nil
}

// acmeClient makes the lego client once, with the stored account for this
// directory, or a new account registered and stored first.
func (is *Issuer) acmeClient(ctx context.Context) (*lego.Client, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.client != nil {
		return is.client, nil
	}
	acct, err := is.store.Account()
	if err != nil && !errors.Is(err, ErrNoAccount) {
		return nil, err
	}
	fresh := errors.Is(err, ErrNoAccount) || acct.Directory != is.cfg.Directory || acct.URI == ""
	if fresh {
		acct = Account{Directory: is.cfg.Directory, Email: is.cfg.Email}
		key, err := certcrypto.GeneratePrivateKey(certcrypto.EC256)
		if err != nil {
			return nil, fmt.Errorf("making an ACME account key: %w", err)
		}
		acct.Key = certcrypto.PEMEncode(key)
	}
	u, err := newUser(acct)
	if err != nil {
		return nil, err
	}
	cfg := lego.NewConfig(u)
	cfg.CADirURL = is.cfg.Directory
	cfg.HTTPClient = is.http
	cfg.UserAgent = "gitreceive"
	client, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("reaching the ACME directory %s: %w", is.cfg.Directory, err)
	}
	if err := client.Challenge.SetHTTP01Provider(spreadProvider{is.spreader}); err != nil {
		return nil, err
	}
	if err := is.register(ctx, client, u, &acct, fresh); err != nil {
		return nil, err
	}
	is.client = client
	return client, nil
}

// register makes a fresh account known to the CA, or updates the contact of
// a stored one whose e-mail changed, and stores the result.
func (is *Issuer) register(ctx context.Context, client *lego.Client, u *user, acct *Account, fresh bool) error {
	var reg *acme.ExtendedAccount
	var err error
	switch {
	case fresh:
		reg, err = client.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
	case acct.Email != is.cfg.Email:
		u.email = is.cfg.Email
		reg, err = client.Registration.UpdateRegistration(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("registering the ACME account with %s: %w", is.cfg.Directory, err)
	}
	u.reg = reg
	acct.URI = reg.Location
	acct.Email = is.cfg.Email
	return is.store.SaveAccount(*acct)
}

// user is lego's view of the account.
type user struct {
	email string
	reg   *acme.ExtendedAccount
	key   crypto.Signer
}

func newUser(a Account) (*user, error) {
	key, err := certcrypto.ParsePEMPrivateKey(a.Key)
	if err != nil {
		return nil, errors.New("the stored ACME account key (DATA/acme/account.key) is not readable; remove DATA/acme/ to register a new account")
	}
	u := &user{email: a.Email, key: key}
	if a.URI != "" {
		u.reg = &acme.ExtendedAccount{Location: a.URI}
	}
	return u, nil
}

func (u *user) GetEmail() string                       { return u.email }
func (u *user) GetRegistration() *acme.ExtendedAccount { return u.reg }
func (u *user) GetPrivateKey() crypto.Signer           { return u.key }

// spreadProvider is lego's HTTP-01 provider: Present returns only once the
// spreader holds the token everywhere, and lego tells the CA to validate
// only after Present returns.
type spreadProvider struct{ s ChallengeSpreader }

func (p spreadProvider) Present(ctx context.Context, domain, token, keyAuth string) error {
	if err := p.s.Put(ctx, token, keyAuth); err != nil {
		return fmt.Errorf("host %s: placing the HTTP-01 token on the nodes: %w", domain, err)
	}
	return nil
}

func (p spreadProvider) CleanUp(ctx context.Context, domain, token, _ string) error {
	if err := p.s.Remove(ctx, token); err != nil {
		return fmt.Errorf("host %s: removing the HTTP-01 token from the nodes: %w", domain, err)
	}
	return nil
}

// RenewalWindow asks the CA when it suggests renewing c (ACME Renewal
// Information, RFC 9773): a CA that revoked the certificate or wants its
// certificates replaced early says so here. ok is false when the CA offers
// no renewal information.
func (is *Issuer) RenewalWindow(ctx context.Context, c Cert) (start, end time.Time, ok bool, err error) {
	leaf, err := certcrypto.ParsePEMCertificate(c.Chain)
	if err != nil {
		return start, end, false, fmt.Errorf("host %s: the stored certificate is not readable: %w", c.Meta.Host, err)
	}
	client, err := is.acmeClient(ctx)
	if err != nil {
		return start, end, false, err
	}
	info, err := client.Certificate.GetRenewalInfo(ctx, leaf)
	if errors.Is(err, api.ErrNoARI) {
		return start, end, false, nil
	}
	if err != nil {
		return start, end, false, fmt.Errorf("host %s: asking %s when to renew: %w", c.Meta.Host, is.cfg.Directory, err)
	}
	return info.SuggestedWindow.Start, info.SuggestedWindow.End, true, nil
}
