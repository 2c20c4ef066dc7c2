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

func TestDue(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := Meta{NotBefore: nb, NotAfter: nb.Add(90 * 24 * time.Hour)}
	tests := []struct {
		name string
		m    Meta
		now  time.Time
		want bool
	}{
		{"fresh", m, nb.Add(time.Hour), false},
		{"31 days left", m, nb.Add(59 * 24 * time.Hour), false},
		{"30 days left", m, nb.Add(60 * 24 * time.Hour), true},
		{"expired", m, nb.Add(100 * 24 * time.Hour), true},
		{"no certificate yet", Meta{}, nb, true},
		{"short-lived, 21 of 60 min left", Meta{NotBefore: nb, NotAfter: nb.Add(time.Hour)}, nb.Add(39 * time.Minute), false},
		{"short-lived, 20 of 60 min left", Meta{NotBefore: nb, NotAfter: nb.Add(time.Hour)}, nb.Add(40 * time.Minute), true},
	}
	for _, tt := range tests {
		if got := Due(tt.m, tt.now); got != tt.want {
			t.Errorf("%s: Due = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	low := func(int64) int64 { return 0 }
	high := func(n int64) int64 { return n - 1 }
	tests := []struct {
		failures int
		rnd      func(int64) int64
		min, max time.Duration
	}{
		{1, low, 225 * time.Second, 225 * time.Second}, // 5 min - 25%
		{1, high, 6 * time.Minute, 375 * time.Second},  // < 5 min + 25%
		{2, low, 450 * time.Second, 450 * time.Second}, // 10 min - 25%
		{4, low, 30 * time.Minute, 30 * time.Minute},   // 40 min - 25%
		{9, low, 9 * time.Hour, 9 * time.Hour},         // capped: 12 h - 25%
		{1000, high, 12 * time.Hour, 15 * time.Hour},   // bounded, no overflow
	}
	for _, tt := range tests {
		got := Backoff(tt.failures, tt.rnd)
		if got < tt.min || got > tt.max {
			t.Errorf("Backoff(%d) = %v, want within [%v, %v]", tt.failures, got, tt.min, tt.max)
		}
	}
}

// fakeClock drives a Renewer: Run calls After once per pass, and step
// moves the time, wakes Run and waits until its pass is over.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tick    chan time.Time
	waiting chan struct{}
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, tick: make(chan time.Time), waiting: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(time.Duration) <-chan time.Time {
	c.waiting <- struct{}{}
	return c.tick
}

func mustMeta(t *testing.T, s *Store, host string) Meta {
	t.Helper()
	m, err := s.Meta(host)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type fixedObtainer struct{ cert Cert }

func (f fixedObtainer) Obtain(_ context.Context, host string) (Cert, error) {
	c := f.cert
	c.Meta.Host = host
	return c, nil
}

func TestRenewerKeepsOldCertWhenInstallFails(t *testing.T) {
	ctx, _ := captureLogs(t)
	store := NewStore(t.TempDir())
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ca := newTestCA(t)
	oldChain, oldKey := ca.issue(t, "app.example.com")
	newChain, newKey := ca.issue(t, "app.example.com")
	old := Cert{Meta: Meta{Host: "app.example.com", Source: SourceACME, NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)}, Chain: oldChain, Key: oldKey}
	if err := store.Put(old); err != nil {
		t.Fatal(err)
	}
	r := &Renewer{
		Store:   store,
		Issuer:  fixedObtainer{Cert{Meta: Meta{Source: SourceACME, NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour)}, Chain: newChain, Key: newKey}},
		Install: func(context.Context, Cert) error { return errors.New("node web2: nginx -t failed") },
		Clock:   newFakeClock(now),
		Rand:    func(int64) int64 { return 0 },
	}
	err := r.Renew(ctx, "app.example.com")
	if err == nil || !strings.Contains(err.Error(), "nginx -t failed") {
		t.Fatalf("Renew: %v", err)
	}
	got, err := store.Get("app.example.com")
	if err != nil || !bytes.Equal(got.Chain, oldChain) || !bytes.Equal(got.Key, oldKey) || got.Meta.Failures != 1 ||
		!got.Meta.NextAttempt.Equal(now.Add(225*time.Second)) || !got.Meta.LastAttempt.Equal(now) {
		t.Fatalf("after a failed install: %+v, %v", got.Meta, err)
	}

	// An operator's certificate is refused; a cancelled context is not the host's failure.
	if err := store.Put(Cert{Meta: Meta{Host: "own.example.com", Source: SourceOperator}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Renew(ctx, "own.example.com"); !errors.Is(err, ErrOperatorCert) || !strings.Contains(err.Error(), "own.example.com") {
		t.Errorf("Renew of an operator's certificate: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Renew(cancelled, "app.example.com"); err == nil {
		t.Fatal("Renew with a cancelled context succeeded")
	}
	if m := mustMeta(t, store, "app.example.com"); m.Failures != 1 {
		t.Errorf("a cancelled attempt counted as a failure: %d", m.Failures)
	}
}
