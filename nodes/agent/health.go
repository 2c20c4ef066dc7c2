package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

var errHealthTimeout = errors.New("health check timed out")

// socketPoll is how often a start looks for its vassal's socket.
const socketPoll = 10 * time.Millisecond

// appFailure is the watcher's verdict: the app cannot run.
type appFailure struct{ cause string }

func (e *appFailure) Error() string { return "the app did not start: " + e.cause }

// healthCheck asks spec.HealthCheck through the socket until a status below
// 500 or the context ends (timeout or the watcher's verdict).
func healthCheck(ctx context.Context, socket string, spec Spec, timeout time.Duration, started time.Time, out io.Writer) error {
	loc := spec.Locations[0]
	backoff := 20 * time.Millisecond
	var lastStatus int
	var lastBody []byte
	var lastErr error
	socketSeen := false
	var refusedSince time.Time
	for {
		if !socketSeen {
			if _, err := os.Stat(socket); err == nil {
				socketSeen = true
				fmt.Fprintf(out, "vassal listening on %s (%.2fs)\n", filepath.Base(socket), time.Since(started).Seconds())
			}
		}
		if socketSeen {
			status, body, err := uwsgiGet(ctx, socket, loc.Host, loc.Path, spec.HealthCheck)
			switch {
			case err == nil && status < 500:
				fmt.Fprintf(out, "health check GET %s -> %d (%.2fs)\n", spec.HealthCheck, status, time.Since(started).Seconds())
				return nil
			case err == nil:
				lastStatus, lastBody, lastErr = status, body, nil
			default:
				lastErr = err
			}
			// A master listens from its bind to its exit (a reload keeps the
			// socket): one refusing for a second has died, whether or not
			// the emperor has noticed yet (it throttles quick respawns).
			switch {
			case !errors.Is(err, syscall.ECONNREFUSED):
				refusedSince = time.Time{}
			case refusedSince.IsZero():
				refusedSince = time.Now()
			case time.Since(refusedSince) > time.Second:
				return &appFailure{cause: "it exited; nothing listens on its socket any more"}
			}
		}
		wait := backoff
		if !socketSeen {
			// Until uWSGI binds, a stat every 10 ms: cheap, and the
			// release is checked within 10 ms of listening, where backing
			// off from the start wasted up to half of its start-up time.
			wait = socketPoll
		}
		select {
		case <-ctx.Done():
			if lastErr == nil && lastStatus != 0 {
				printAnswer(out, spec.HealthCheck, lastStatus, lastBody)
			}
			return healthError(ctx, spec, timeout, socket, socketSeen, lastStatus, lastErr)
		case <-time.After(wait):
		}
		if socketSeen {
			backoff = min(backoff*2, 500*time.Millisecond)
		}
	}
}

// answerLines bounds how much of a failing health check's answer is shown.
const answerLines = 15

// printAnswer shows the start of the last answer a failing health check
// got: an app's error page often says why (a PHP error, a framework's
// message), where the log holds only request lines.
func printAnswer(out io.Writer, path string, status int, body []byte) {
	text := strings.TrimSpace(string(body))
	if text == "" {
		fmt.Fprintf(out, "the last answer to GET %s: %d with an empty body\n", path, status)
		return
	}
	lines := strings.Split(text, "\n")
	fmt.Fprintf(out, "the last answer to GET %s: %d, beginning:\n", path, status)
	for i, l := range lines {
		if i == answerLines {
			fmt.Fprintf(out, "  ... (%d more lines)\n", len(lines)-answerLines)
			break
		}
		if l = strings.TrimRight(l, "\r"); len(l) > maxLineBytes {
			l = l[:maxLineBytes] + "..."
		}
		fmt.Fprintf(out, "  %s\n", l)
	}
}

func healthError(ctx context.Context, spec Spec, timeout time.Duration, socket string, socketSeen bool, lastStatus int, lastErr error) error {
	cause := context.Cause(ctx)
	if errors.As(cause, new(*appFailure)) {
		return cause
	}
	if !errors.Is(cause, errHealthTimeout) {
		return fmt.Errorf("the start was interrupted: %w", cause)
	}
	switch {
	case !socketSeen:
		return fmt.Errorf("the app's socket %s did not appear within %s", socket, timeout)
	case lastErr == nil && lastStatus != 0:
		return fmt.Errorf("health check GET %s answered %d for %s", spec.HealthCheck, lastStatus, timeout)
	default:
		return fmt.Errorf("health check GET %s got no answer within %s (%v)", spec.HealthCheck, timeout, lastErr)
	}
}
