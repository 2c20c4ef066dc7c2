//go:build e2e

package certs

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// The background job against pebble issuing one-hour certificates, on a
// fake clock: nothing before two thirds of the lifetime, a renewal after,
// a failure backed off and retried, an operator's certificate never touched.
func TestRenewerWithPebble(t *testing.T) {
	t.Parallel()
	ctx, logs := captureLogs(t)
	_, store, is := pebbleIssuer(t, 3600)
	obtainer := &flakyObtainer{next: is}
	clock := newFakeClock(time.Now())
	r := &Renewer{Store: store, Issuer: obtainer, Clock: clock, Interval: time.Minute, Rand: func(n int64) int64 { return n / 2 }}
	const host = "app.example.com"
	if err := r.Renew(ctx, host); err != nil {
		t.Fatal(err)
	}
	first := mustMeta(t, store, host)
	if life := first.NotAfter.Sub(first.NotBefore); life < 59*time.Minute || life > time.Hour {
		t.Fatalf("pebble issued a certificate for %v, want an hour", life)
	}
	if err := store.Put(Cert{Meta: Meta{Host: "own.example.com", Source: SourceOperator, NotAfter: first.NotBefore}}); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	clock.waitIdle(t)

	clock.step(t, first.NotBefore.Add(30*time.Minute))
	if n := obtainer.attempts(); n != 1 {
		t.Fatalf("%d attempts with half the lifetime left, want none after the first", n-1)
	}
	clock.step(t, first.NotBefore.Add(41*time.Minute))
	second := mustMeta(t, store, host)
	if obtainer.attempts() != 2 || !second.Renewed.Equal(clock.Now()) || second.NotAfter.Before(first.NotAfter) {
		t.Fatalf("after two thirds of the lifetime: %d attempts, renewed %v (now %v), not after %v (was %v)",
			obtainer.attempts(), second.Renewed, clock.Now(), second.NotAfter, first.NotAfter)
	}

	obtainer.setFail(errors.New("acme: rate limited"))
	failedAt := second.NotBefore.Add(50 * time.Minute)
	clock.step(t, failedAt)
	failed := mustMeta(t, store, host)
	wantNext := failedAt.Add(5 * time.Minute) // Backoff(1) with the middle jitter
	if failed.Failures != 1 || !strings.Contains(failed.LastError, "rate limited") || !failed.NextAttempt.Equal(wantNext) ||
		!failed.NotAfter.Equal(second.NotAfter) {
		t.Fatalf("after a failure: %+v; want 1 failure, the error, next attempt %v, the old certificate kept", failed, wantNext)
	}
	clock.step(t, failedAt.Add(time.Minute))
	if n := obtainer.attempts(); n != 3 {
		t.Fatalf("%d attempts during the back-off, want 3", n)
	}
	obtainer.setFail(nil)
	clock.step(t, wantNext)
	healed := mustMeta(t, store, host)
	if obtainer.attempts() != 4 || healed.Failures != 0 || healed.LastError != "" || !healed.NextAttempt.IsZero() {
		t.Fatalf("after the back-off: %d attempts, %+v", obtainer.attempts(), healed)
	}
	if own := mustMeta(t, store, "own.example.com"); !own.Renewed.IsZero() || own.Failures != 0 {
		t.Errorf("the operator's certificate was touched: %+v", own)
	}

	stop()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not stop with its context")
	}
	out := logs.String()
	assertNoKeyLogged(t, out)
	if !strings.Contains(out, "certificate renewed") || !strings.Contains(out, "certificate not renewed") {
		t.Errorf("the renewals' outcomes are not logged:\n%s", out)
	}
}

// A certificate not yet due is renewed when the CA's renewal information
// says so: pebble suggests renewing a revoked certificate at once.
func TestRenewerFollowsCARenewalInfo(t *testing.T) {
	t.Parallel()
	ctx, logs := captureLogs(t)
	_, store, is := pebbleIssuer(t, 0)
	start := time.Now()
	clock := newFakeClock(start)
	r := &Renewer{Store: store, Issuer: is, Clock: clock, Rand: func(n int64) int64 { return n / 2 }}
	const host = "app.example.com"
	if err := r.Renew(ctx, host); err != nil {
		t.Fatal(err)
	}
	first, err := store.Get(host)
	if err != nil {
		t.Fatal(err)
	}

	clock.mu.Lock()
	clock.now = start.Add(time.Hour)
	clock.mu.Unlock()
	if err := r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if m := mustMeta(t, store, host); !m.Renewed.Equal(start) {
		t.Fatalf("renewed at %v inside the CA's window for a fresh certificate", m.Renewed)
	}

	client, err := is.acmeClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Certificate.Revoke(ctx, first.Chain); err != nil {
		t.Fatal(err)
	}
	if err := r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := store.Get(host)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Meta.Renewed.Equal(start.Add(time.Hour)) || bytes.Equal(second.Chain, first.Chain) {
		t.Fatalf("the revoked certificate was not replaced: renewed %v", second.Meta.Renewed)
	}
	assertNoKeyLogged(t, logs.String())
}

// flakyObtainer counts attempts and fails while fail is set.
type flakyObtainer struct {
	next Obtainer
	mu   sync.Mutex
	n    int
	fail error
}

func (f *flakyObtainer) Obtain(ctx context.Context, host string) (Cert, error) {
	f.mu.Lock()
	f.n++
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		return Cert{}, fail
	}
	return f.next.Obtain(ctx, host)
}

func (f *flakyObtainer) attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *flakyObtainer) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (c *fakeClock) step(t *testing.T, to time.Time) {
	t.Helper()
	c.mu.Lock()
	c.now = to
	c.mu.Unlock()
	select {
	case c.tick <- to:
	case <-time.After(time.Minute):
		t.Fatal("the renewer is not waiting for the clock")
	}
	c.waitIdle(t)
}

func (c *fakeClock) waitIdle(t *testing.T) {
	t.Helper()
	select {
	case <-c.waiting:
	case <-time.After(time.Minute):
		t.Fatal("the renewer's pass did not end within a minute")
	}
}
