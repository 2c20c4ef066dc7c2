package apps

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// lockHolder describes the push holding an app's lock, for the message the
// waiting pusher sees.
type lockHolder struct {
	user   string
	branch string
	commit string
	done   chan struct{} // closed on release
}

func (h *lockHolder) String() string {
	return fmt.Sprintf("%s's deploy of %s (%s)", h.user, h.branch, h.commit)
}

// appLocks allows one push per app at a time. The locks live in the daemon's
// memory only: a killed daemon holds nothing, and no file descriptor can leak
// into git or hook children and outlive the push.
type appLocks struct {
	mu   sync.Mutex
	held map[string]*lockHolder
}

func newAppLocks() *appLocks { return &appLocks{held: map[string]*lockHolder{}} }

// errLockTimeout is returned when another push held the app for too long.
type errLockTimeout struct {
	holder string
	waited time.Duration
}

func (e errLockTimeout) Error() string {
	return fmt.Sprintf("gave up after waiting %s for %s; try again when it has finished", e.waited.Round(time.Second), e.holder)
}

// acquire takes app's lock for holder, waiting up to timeout and calling
// waiting every interval while another push holds it. The returned release
// is idempotent.
func (l *appLocks) acquire(ctx context.Context, app string, holder *lockHolder, timeout, interval time.Duration, waiting func(current *lockHolder)) (release func(), err error) {
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	announced := false
	for {
		l.mu.Lock()
		current, busy := l.held[app]
		if !busy {
			holder.done = make(chan struct{})
			l.held[app] = holder
			l.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					l.mu.Lock()
					delete(l.held, app)
					l.mu.Unlock()
					close(holder.done)
				})
			}, nil
		}
		l.mu.Unlock()

		if !announced {
			waiting(current)
			announced = true
		}
		select {
		case <-current.done:
		case <-tick.C:
			waiting(current)
		case <-deadline.C:
			return nil, errLockTimeout{holder: current.String(), waited: time.Since(start)}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
