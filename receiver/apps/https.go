package apps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/hooks/termsafe"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/receiver/certs"
	"github.com/gitreceive/gitreceive/receiver/guard"
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
	// offSaid is set once a push was told why ACME is off: said once
	// per daemon, not on every push.
	offSaid atomic.Bool
}

// issueTimeout bounds one host's certificate during a push: the CA and
// the nodes have that long before the push goes on saying "pending".
const issueTimeout = 2 * time.Minute

// CertRenewal paces the renewal job: a pass every Interval (default an
// hour), a retry of a failed host after Backoff(failures) (default
// certs.Backoff). Tests set both short.
type CertRenewal struct {
	Interval time.Duration
	Backoff  func(failures int) time.Duration
}

// InitHTTPS makes the certificate store and, when https is on (or auto
// with acme_email set), the ACME issuer and renewer, paced by pace.
func (a *Apps) InitHTTPS(pace CertRenewal) error {
	h := &httpsService{}
	a.https = h
	h.store = certs.NewStore(a.cfg.DataDir)
	a.fleet.SetupCerts = CertFiles(a.cfg.DataDir)
	switch {
	case a.cfg.HTTPS == "off":
		h.off = "https = off on this receiver"
		return nil
	case a.cfg.ACMEEmail == "":
		h.off = "HTTPS is off on this receiver until its operator sets acme_email"
		return nil
	}
	var roots []byte
	if a.cfg.ACMECA != "" {
		var err error
		if roots, err = os.ReadFile(a.cfg.ACMECA); err != nil {
			return fmt.Errorf("acme_ca: %w", err)
		}
	}
	issuer, err := certs.NewIssuer(certs.IssuerConfig{Directory: a.cfg.ACMEDirectory, Email: a.cfg.ACMEEmail, Roots: roots},
		h.store, fleetSpreader{a})
	if err != nil {
		return err
	}
	h.renewer = &certs.Renewer{Store: h.store, Issuer: issuer, Install: a.installCert, Lock: a.lockHostApp,
		Interval: pace.Interval, Backoff: pace.Backoff}
	return nil
}

// startRenewal runs the renewal job until Close.
func (a *Apps) startRenewal() {
	if a.https == nil || a.https.renewer == nil {
		return
	}
	ctx := a.log.With().Str("job", "certificates").Logger().WithContext(a.life)
	guard.Go(a.log, "certificate renewal", func() { _ = a.https.renewer.Run(ctx) })
}

// fleetSpreader places HTTP-01 answers on every node deploys go to.
type fleetSpreader struct{ a *Apps }

func (f fleetSpreader) Put(ctx context.Context, token, keyAuth string) error {
	targets, err := f.a.fleet.Inventory.Targets()
	if err != nil {
		return err
	}
	return f.a.fleet.PutChallenge(ctx, targets, token, keyAuth)
}

func (f fleetSpreader) Remove(ctx context.Context, token string) error {
	targets, err := f.a.fleet.Inventory.Targets()
	if err != nil {
		return err
	}
	return f.a.fleet.RemoveChallenge(ctx, targets, token)
}

// installCert puts c on every node deploys go to, all or nothing.
func (a *Apps) installCert(ctx context.Context, c certs.Cert) error {
	targets, err := a.fleet.Inventory.Targets()
	if err != nil {
		return err
	}
	return a.fleet.InstallCert(ctx, targets, certFile(c))
}

func certFile(c certs.Cert) nodes.CertFile {
	return nodes.CertFile{Host: c.Meta.Host, Chain: c.Chain, Key: c.Key.Bytes()}
}

// hostInstance is the app and instance serving host (or whose previous
// release answers at it, prev.HOST); ok is false when none does.
func (a *Apps) hostInstance(host string) (app, instance string, ok bool) {
	routed, err := a.routedHosts()
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
func (a *Apps) lockHostApp(ctx context.Context, host string) (func(), error) {
	app, _, ok := a.hostInstance(host)
	if !ok {
		return func() {}, nil
	}
	return a.locks.acquire(ctx, app, &lockHolder{user: "gitreceive", branch: "-", commit: "renewing the certificate of " + host},
		a.cfg.LockTimeout, lockWaitInterval, func(*lockHolder) {})
}

// issueCerts gets a certificate for every host the live releases answer
// at that has none yet, all at once. It never fails the push: a host the
// CA or a node refused is "pending", and the renewal job retries it with
// back-off.
func (a *Apps) issueCerts(ctx context.Context, log zerolog.Logger, built []*builder.Release, out *hooks.Progress) {
	if a.https.renewer == nil {
		if a.cfg.HTTPS != "off" && !a.https.offSaid.Swap(true) {
			out.Detail("https: %s", a.https.off)
		}
		return
	}
	var want []string
	for _, r := range built {
		if r.Config.HTTPS == appconfig.HTTPSOff {
			continue
		}
		host := a.location(r).Host
		if ok, why := certs.Eligible(host); !ok {
			out.Detail("https for %s: skipped (%s)", host, why)
			continue
		}
		for _, host := range []string{host, "prev." + host} {
			if a.needsCert(log, host, out) {
				want = append(want, host)
			}
		}
	}
	lines := make([]string, len(want))
	var wg sync.WaitGroup
	for i, host := range want {
		wg.Add(1)
		guard.Go(log, "issuing a certificate", func() {
			defer wg.Done()
			lines[i] = a.issueOne(ctx, log, host)
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
func (a *Apps) needsCert(log zerolog.Logger, host string, out *hooks.Progress) bool {
	meta, err := a.https.store.Meta(host)
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
func (a *Apps) issueOne(ctx context.Context, log zerolog.Logger, host string) string {
	ctx, cancel := context.WithTimeout(log.WithContext(context.WithoutCancel(ctx)), issueTimeout)
	defer cancel()
	start := time.Now()
	if err := a.https.renewer.Renew(ctx, host); err != nil {
		return fmt.Sprintf("https for %s: pending (%s)", host, oneLine(err.Error()))
	}
	meta, err := a.https.store.Meta(host)
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
