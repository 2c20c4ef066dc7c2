package apps

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestAppLockSerializesOneAppAndNotOthers(t *testing.T) {
	l := newAppLocks()
	ctx := context.Background()
	release, err := l.acquire(ctx, "a", &lockHolder{user: "alice", branch: "main", commit: "1234567"}, time.Second, time.Hour, func(*lockHolder) {})
	if err != nil {
		t.Fatal(err)
	}
	// Another app is free.
	rb, err := l.acquire(ctx, "b", &lockHolder{}, time.Second, time.Hour, func(*lockHolder) { t.Error("app b waited") })
	if err != nil {
		t.Fatal(err)
	}
	rb()

	waited := make(chan string, 10)
	got := make(chan error, 1)
	go func() {
		r, err := l.acquire(ctx, "a", &lockHolder{user: "bob"}, 10*time.Second, 10*time.Millisecond, func(h *lockHolder) { waited <- h.String() })
		if r != nil {
			r()
		}
		got <- err
	}()
	if msg := <-waited; msg != "alice's deploy of main (1234567)" {
		t.Fatalf("waiting message %q", msg)
	}
	<-waited // reminded while waiting
	release()
	release() // idempotent
	if err := <-got; err != nil {
		t.Fatalf("second acquire: %v", err)
	}
}

func TestAppLockTimeoutAndCancel(t *testing.T) {
	l := newAppLocks()
	release, _ := l.acquire(context.Background(), "a", &lockHolder{user: "alice"}, time.Second, time.Hour, func(*lockHolder) {})
	defer release()

	_, err := l.acquire(context.Background(), "a", &lockHolder{}, 20*time.Millisecond, time.Hour, func(*lockHolder) {})
	var te errLockTimeout
	if !errors.As(err, &te) {
		t.Fatalf("want timeout, got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.acquire(ctx, "a", &lockHolder{}, time.Minute, time.Hour, func(*lockHolder) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("want cancelled, got %v", err)
	}
}
