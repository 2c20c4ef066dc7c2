package receiver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/hooks/termsafe"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/receiver/certs"
)

// HTTPS (issue 19, DESIGN.md decision 10): the receiver is the only ACME
// client. After a deploy is live on plain HTTP, every host it answers at
// without a certificate gets one; HTTP-01 answers and certificates go to
// every node through package nodes; a job of the daemon renews them.

// httpsService is the receiver's side of HTTPS.
type httpsService struct {
	store *certs.Store
	// renewer obtains, installs and renews ACME certificates; nil when
	// ACME is off (off says why, for the push).
	renewer *certs.Renewer
	off     string

	// renewInterval and renewBackoff, when set, replace the Renewer's
	// defaults (WithCertRenewal).
	renewInterval time.Duration
	renewBackoff  func(failures int) time.Duration
}

// issueTimeout bounds one host's certificate during a push: the CA and
// the nodes have that long before the push goes on saying "pending".
const issueTimeout = 2 * time.Minute

// WithCertRenewal makes the renewal job pass every interval and retry a
// failed host after backoff(failures) (tests, which cannot wait an hour).
func WithCertRenewal(interval time.Duration, backoff func(failures int) time.Duration) Option {
	return func(s *Server) {
		s.https.renewInterval, s.https.renewBackoff = interval, backoff
	}
}

// initHTTPS makes the certificate store and, when https is on (or auto
// with acme_email set), the ACME issuer and renewer.
func (s *Server) initHTTPS() error {
	h := s.https
	h.store = certs.NewStore(s.cfg.DataDir)
	s.fleet.SetupCerts = CertFiles(s.cfg.DataDir)
	switch {
	case s.cfg.HTTPS == "off":
		h.off = "https = off on this receiver"
		return nil
	case s.cfg.ACMEEmail == "":
		h.off = "HTTPS is off on this receiver until its operator sets acme_email"
		return nil
	}
	var roots []byte
	if s.cfg.ACMECA != "" {
		var err error
		if roots, err = os.ReadFile(s.cfg.ACMECA); err != nil {
			return fmt.Errorf("acme_ca: %w", err)
		}
	}
	issuer, err := certs.NewIssuer(certs.IssuerConfig{Directory: s.cfg.ACMEDirectory, Email: s.cfg.ACMEEmail, Roots: roots},
		h.store, fleetSpreader{s})
	if err != nil {
		return err
	}
	h.renewer = &certs.Renewer{Store: h.store, Issuer: issuer, Install: s.installCert, Lock: s.lockHostApp,
		Interval: h.renewInterval, Backoff: h.renewBackoff}
	return nil
}

// startRenewal runs the renewal job until Shutdown.
func (s *Server) startRenewal() {
	if s.https.renewer == nil {
		return
	}
	ctx := s.log.With().Str("job", "certificates").Logger().WithContext(s.life)
	goSafe(s.log, "certificate renewal", func() { _ = s.https.renewer.Run(ctx) })
}

// fleetSpreader places HTTP-01 answers on every node deploys go to.
type fleetSpreader struct{ s *Server }

func (f fleetSpreader) Put(ctx context.Context, token, keyAuth string) error {
	targets, err := f.s.fleet.Inventory.Targets()
	if err != nil {
		return err
	}
	return f.s.fleet.PutChallenge(ctx, targets, token, keyAuth)
}

func (f fleetSpreader) Remove(ctx context.Context, token string) error {
	targets, err := f.s.fleet.Inventory.Targets()
	if err != nil {
		return err
	}
	return f.s.fleet.RemoveChallenge(ctx, targets, token)
}

// installCert puts c on every node deploys go to, all or nothing.
func (s *Server) installCert(ctx context.Context, c certs.Cert) error {
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return err
	}
	return s.fleet.InstallCert(ctx, targets, certFile(c))
}

func certFile(c certs.Cert) nodes.CertFile {
	return nodes.CertFile{Host: c.Meta.Host, Chain: c.Chain, Key: c.Key.Bytes()}
}

// hostInstance is the app and instance serving host (or whose previous
// release answers at it, prev.HOST); ok is false when none does.
func (s *Server) hostInstance(host string) (app, instance string, ok bool) {
	routed, err := s.routedHosts()
	if err != nil {
		return "", "", false
	}
	c, ok := routed[host]
	if !ok {
		c, ok = routed[strings.TrimPrefix(host, "prev.")]
	}
	return c.App, c.Instance, ok
}

// lockHostApp takes the lock of the app serving host, if any: a renewal
// never installs beside a deploy of it.
func (s *Server) lockHostApp(ctx context.Context, host string) (func(), error) {
	app, _, ok := s.hostInstance(host)
	if !ok {
		return func() {}, nil
	}
	return s.locks.acquire(ctx, app, &lockHolder{user: "gitreceive", branch: "-", commit: "renewing the certificate of " + host},
		s.cfg.LockTimeout, lockWaitInterval, func(*lockHolder) {})
}

// issueCerts gets a certificate for every host the live releases answer
// at that has none yet, all at once. It never fails the push: a host the
// CA or a node refused is "pending", and the renewal job retries it with
// back-off.
func (s *Server) issueCerts(ctx context.Context, log zerolog.Logger, built []*builder.Release, out *hooks.Progress) {
	var want []string
	saidOff := false
	for _, r := range built {
		if r.Config.HTTPS == appconfig.HTTPSOff {
			continue
		}
		host := s.location(r).Host
		if ok, why := certs.Eligible(host); !ok {
			out.Detail("https for %s: skipped (%s)", host, why)
			continue
		}
		for _, host := range []string{host, "prev." + host} {
			if !s.needsCert(log, host, out) {
				continue
			}
			if s.https.renewer == nil {
				if !saidOff {
					out.Detail("https: %s", s.https.off)
					saidOff = true
				}
				continue
			}
			want = append(want, host)
		}
	}
	lines := make([]string, len(want))
	var wg sync.WaitGroup
	for i, host := range want {
		wg.Add(1)
		goSafe(log, "issuing a certificate", func() {
			defer wg.Done()
			lines[i] = s.issueOne(ctx, log, host)
		})
	}
	wg.Wait()
	for _, line := range lines {
		if line != "" {
			out.Detail("%s", line)
		}
	}
}

// needsCert reports whether host has no certificate and no attempt
// scheduled; a scheduled one is said.
func (s *Server) needsCert(log zerolog.Logger, host string, out *hooks.Progress) bool {
	meta, err := s.https.store.Meta(host)
	switch {
	case err == nil && !meta.NotAfter.IsZero():
		return false // it has one; the renewal job keeps it fresh
	case err == nil && meta.LastError != "":
		out.Detail("https for %s: pending (%s; retrying after %s)", host, oneLine(meta.LastError), meta.NextAttempt.UTC().Format(time.RFC3339))
		return false
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		log.Error().Err(err).Str("host", host).Msg("reading the certificate store")
		return false
	}
	return true
}

// issueOne obtains and installs host's first certificate and returns the
// line for the push. Not cancelled by the pusher leaving: the attempt's
// outcome is recorded either way.
func (s *Server) issueOne(ctx context.Context, log zerolog.Logger, host string) string {
	ctx, cancel := context.WithTimeout(log.WithContext(context.WithoutCancel(ctx)), issueTimeout)
	defer cancel()
	start := time.Now()
	if err := s.https.renewer.Renew(ctx, host); err != nil {
		return fmt.Sprintf("https for %s: pending (%s)", host, oneLine(err.Error()))
	}
	meta, err := s.https.store.Meta(host)
	if err != nil {
		log.Error().Err(err).Str("host", host).Msg("reading the certificate store")
		return ""
	}
	return fmt.Sprintf("https for %s: certificate from %s, valid until %s (%.1fs)", host, meta.Issuer,
		meta.NotAfter.UTC().Format("2006-01-02 15:04 UTC"), time.Since(start).Seconds())
}

// oneLine is an error for a one-line message: its first line, escaped
// for a terminal and bounded.
func oneLine(msg string) string {
	msg, _, _ = strings.Cut(strings.TrimSpace(msg), "\n")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return termsafe.String(msg)
}

// CertFiles lists the certificates in dataDir's store for `nodes setup`
// (Fleet.SetupCerts): a node set up, or added, gets every one.
func CertFiles(dataDir string) func() ([]nodes.CertFile, error) {
	return func() ([]nodes.CertFile, error) {
		store := certs.NewStore(dataDir)
		hosts, err := store.Hosts()
		if err != nil {
			return nil, err
		}
		var files []nodes.CertFile
		for _, host := range hosts {
			c, err := store.Get(host)
			if errors.Is(err, fs.ErrNotExist) {
				continue // a pending first attempt: no certificate yet
			}
			if err != nil {
				return nil, err
			}
			files = append(files, certFile(c))
		}
		return files, nil
	}
}
