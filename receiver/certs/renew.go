package certs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Due reports whether a certificate should be renewed at now: when a third
// of its lifetime or less remains (Let's Encrypt's advice: 30 days of 90),
// or when there is none yet.
func Due(m Meta, now time.Time) bool {
	if m.NotAfter.IsZero() {
		return true
	}
	lifetime := m.NotAfter.Sub(m.NotBefore)
	return m.NotAfter.Sub(now) <= lifetime/3
}

// Back-off after failed attempts: 5 minutes, doubling per failure, at most
// 12 hours, each ±25% at random so that hosts failing together (a CA
// outage) do not retry together. Let's Encrypt allows 5 failed validations
// per host per hour, so the first retries stay under that.
const (
	backoffFirst = 5 * time.Minute
	backoffMax   = 12 * time.Hour
)

// Backoff is how long to wait after the failures-th failure in a row; rnd
// returns a number in [0, n) (rand.Int64N; a fixed one in tests).
func Backoff(failures int, rnd func(n int64) int64) time.Duration {
	d := backoffFirst
	for i := 1; i < failures && d < backoffMax; i++ {
		d *= 2
	}
	d = min(d, backoffMax)
	return d*3/4 + time.Duration(rnd(int64(d/2)))
}

// Obtainer gets a new certificate for a host: the Issuer.
type Obtainer interface {
	Obtain(ctx context.Context, host string) (Cert, error)
}

// RenewalAdvisor is an Obtainer that can also say when its CA suggests
// renewing a certificate (the Issuer, through ARI).
type RenewalAdvisor interface {
	RenewalWindow(ctx context.Context, c Cert) (start, end time.Time, ok bool, err error)
}

// Clock is time for the Renewer, a fake one in tests.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Renewer obtains and renews the ACME certificates in the Store: Renew for
// one host now (a first deploy, `certs:renew`), Run as the background job.
// One attempt at a time per host; the job itself goes host by host.
type Renewer struct {
	Store  *Store
	Issuer Obtainer
	// Install puts a new certificate on every node of the host's instance,
	// all or nothing, before the Store records it; nil: store only. Its
	// failure is the attempt's failure, and the nodes and the Store keep
	// the certificate they had.
	Install func(ctx context.Context, c Cert) error
	// Clock defaults to the real one, Interval (between passes of Run) to
	// an hour, Rand (the back-off's jitter) to rand.Int64N.
	Clock    Clock
	Interval time.Duration
	Rand     func(n int64) int64
	// Backoff, when set, replaces the package's Backoff (tests that
	// cannot wait minutes for a retry).
	Backoff func(failures int) time.Duration
	// Lock, when set, is taken around each attempt of RunOnce (the
	// receiver: the lock of the app serving the host, so that a renewal
	// never installs beside a deploy). Renew itself does not take it: its
	// callers hold it already.
	Lock func(ctx context.Context, host string) (unlock func(), err error)

	locks sync.Map // host -> *sync.Mutex
}

// ErrOperatorCert is returned for a host whose certificate an operator
// supplied: ACME never replaces it.
var ErrOperatorCert = errors.New("its certificate was added by an operator (certs:add), which ACME never replaces; certs:remove it first to use ACME")

func (r *Renewer) clock() Clock {
	if r.Clock == nil {
		return realClock{}
	}
	return r.Clock
}

// Renew obtains a certificate for host now, whatever its schedule, and
// records the outcome in the Store: on success the new certificate; on
// failure the error, the count of failures and the next attempt's time.
func (r *Renewer) Renew(ctx context.Context, host string) error {
	lock, _ := r.locks.LoadOrStore(host, new(sync.Mutex))
	lock.(*sync.Mutex).Lock()
	defer lock.(*sync.Mutex).Unlock()

	meta, err := r.Store.Meta(host)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		meta = Meta{Host: host, Source: SourceACME}
	case err != nil:
		return err
	case meta.Source == SourceOperator:
		return fmt.Errorf("host %s: %w", host, ErrOperatorCert)
	}
	log := zerolog.Ctx(ctx).With().Str("host", host).Logger()
	now := r.clock().Now()
	c, err := r.Issuer.Obtain(ctx, host)
	if err == nil && r.Install != nil {
		err = r.Install(ctx, c)
	}
	if err != nil {
		if ctx.Err() != nil {
			return err // the receiver is stopping: not the host's failure
		}
		meta.LastAttempt = now
		meta.LastError = err.Error()
		meta.Failures++
		meta.NextAttempt = now.Add(r.backoff(meta.Failures))
		log.Warn().Err(err).Int("failures", meta.Failures).Time("next_attempt", meta.NextAttempt).Msg("certificate not renewed")
		if serr := r.Store.SaveMeta(meta); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	c.Meta.Renewed = now
	c.Meta.LastAttempt = now
	if err := r.Store.Put(c); err != nil {
		return err
	}
	log.Info().Str("issuer", c.Meta.Issuer).Time("not_after", c.Meta.NotAfter).Msg("certificate renewed")
	return nil
}

// RunOnce attempts every ACME host whose certificate is due, whose CA
// suggests renewing it now, or whose back-off after a failure has passed,
// one after another. It returns the
// first error that is not a host's own (the Store unreadable); hosts'
// failures are in their metadata.
func (r *Renewer) RunOnce(ctx context.Context) error {
	hosts, err := r.Store.Hosts()
	if err != nil {
		return err
	}
	for _, host := range hosts {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		meta, err := r.Store.Meta(host)
		if err != nil {
			zerolog.Ctx(ctx).Error().Err(err).Str("host", host).Msg("certificate skipped")
			continue
		}
		now := r.clock().Now()
		if !r.pending(meta, now) && !r.caSaysRenew(ctx, meta, now) {
			continue
		}
		r.renewLocked(ctx, host)
	}
	return nil
}

// renewLocked is Renew under Lock; failures are logged and recorded by
// Renew, a lock not taken is logged here.
func (r *Renewer) renewLocked(ctx context.Context, host string) {
	if r.Lock != nil {
		unlock, err := r.Lock(ctx, host)
		if err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("host", host).Msg("certificate renewal postponed")
			return
		}
		defer unlock()
	}
	_ = r.Renew(ctx, host)
}

func (r *Renewer) backoff(failures int) time.Duration {
	if r.Backoff != nil {
		return r.Backoff(failures)
	}
	return Backoff(failures, r.rand())
}

func (r *Renewer) pending(m Meta, now time.Time) bool {
	if m.Source != SourceACME {
		return false
	}
	if m.Failures > 0 || !m.NextAttempt.IsZero() {
		return !now.Before(m.NextAttempt)
	}
	return Due(m, now)
}

// caSaysRenew asks the CA, when the Issuer can, whether a certificate that
// is not yet due should be renewed now: at a random time within the CA's
// suggested window, as RFC 9773 recommends, so that renewals spread out.
// When the CA cannot say, the lifetime rule alone decides.
func (r *Renewer) caSaysRenew(ctx context.Context, m Meta, now time.Time) bool {
	adv, ok := r.Issuer.(RenewalAdvisor)
	if !ok || m.Source != SourceACME || m.NotAfter.IsZero() || m.Failures > 0 {
		return false
	}
	c, err := r.Store.Get(m.Host)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("certificate skipped")
		return false
	}
	start, end, ok, err := adv.RenewalWindow(ctx, c)
	if err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Str("host", m.Host).Msg("no renewal information; the lifetime decides")
		return false
	}
	if !ok {
		return false
	}
	at := start
	if end.After(start) {
		at = at.Add(time.Duration(r.rand()(int64(end.Sub(start)))))
	}
	return !now.Before(at)
}

func (r *Renewer) rand() func(n int64) int64 {
	if r.Rand == nil {
		return rand.Int64N
	}
	return r.Rand
}

// Run calls RunOnce every Interval until ctx ends.
func (r *Renewer) Run(ctx context.Context) error {
	interval := r.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	for {
		if err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			zerolog.Ctx(ctx).Error().Err(err).Msg("certificate renewal pass failed")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.clock().After(interval):
		}
	}
}
