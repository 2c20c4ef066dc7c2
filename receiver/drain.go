package receiver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/cmdline"
	"github.com/gitreceive/gitreceive/receiver/guard"
)

// A stopping receiver keeps its SSH listener open while it drains: a client
// that connects then is authenticated and told, in one sentence on its
// stderr, that the receiver is restarting (exit 1, nothing run). Closing
// the listener first would answer "Connection refused" from the client's
// own ssh, which says neither why nor when to retry; and nothing else can
// take the port while this process drains (a restarted or upgraded
// receiver starts only after this one has exited).
const (
	restartingPush    = "gitreceive is restarting; push again in a moment"
	restartingCommand = "gitreceive is restarting; run the command again in a moment"
	// restartingEndless ends a session that would run until its client
	// ends it (logs -f), which a stopping receiver does not wait for.
	restartingEndless = "gitreceive is restarting; run the command again in a moment to go on"
	// cutSentence is what a session still running at shutdown_timeout is
	// told before its connection is closed.
	cutSentence = "the receiver is stopping and its shutdown_timeout has run out: this was cancelled, and what it had begun is undone; try again in a moment"
)

// cancelGrace bounds the wait, after shutdown_timeout, for the cancelled
// sessions to undo what they had begun (their deploys take nodes back with
// the same bounds as for a dropped pusher).
const cancelGrace = 5 * time.Minute

// connCloseGrace is how long a drained receiver waits for its clients to
// close their connections before it closes them.
const connCloseGrace = 2 * time.Second

// errShutdownTimeout is Shutdown's error when sessions had to be cancelled.
var errShutdownTimeout = errors.New("shutdown_timeout reached: the sessions still running were cancelled")

// drain counts the sessions in flight; once stopping, it admits no new one.
type drain struct {
	mu       sync.Mutex
	stopping bool
	cut      bool // shutdown_timeout ran out: the running sessions are cancelled
	running  map[*call]struct{}
	// endlessCalls are the running sessions that only their client ends
	// (logs -f), with what ends them.
	endlessCalls map[*call]context.CancelCauseFunc
	wg           sync.WaitGroup
}

// errStopping ends an endless session when the receiver stops.
var errStopping = errors.New("the receiver is stopping")

// endless registers c as a session that runs until its client ends it:
// stop ends it, at once when the receiver is already stopping.
func (d *drain) endless(c *call, cancel context.CancelCauseFunc) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		cancel(errStopping)
		return
	}
	if d.endlessCalls == nil {
		d.endlessCalls = map[*call]context.CancelCauseFunc{}
	}
	d.endlessCalls[c] = cancel
}

// endedByStop is the error of an endless session: the sentence to come
// back when the stop ended it.
func endedByStop(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errStopping) {
		return apps.Failf("%s", restartingEndless)
	}
	return err
}

// begin admits c unless the receiver is stopping.
func (d *drain) begin(c *call) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return false
	}
	if d.running == nil {
		d.running = map[*call]struct{}{}
	}
	d.running[c] = struct{}{}
	d.wg.Add(1)
	return true
}

// end is c's session ending; it reports whether c was cancelled at
// shutdown_timeout.
func (d *drain) end(c *call) (cut bool) {
	d.mu.Lock()
	delete(d.running, c)
	delete(d.endlessCalls, c)
	cut = d.cut
	d.mu.Unlock()
	d.wg.Done()
	return cut
}

// stop admits no more sessions, ends the endless ones and returns how
// many are running.
func (d *drain) stop() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopping = true
	for _, cancel := range d.endlessCalls {
		cancel(errStopping)
	}
	return len(d.running)
}

// cancel marks the running sessions as cut and returns them.
func (d *drain) cancel() []*call {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut = true
	calls := make([]*call, 0, len(d.running))
	for c := range d.running {
		calls = append(calls, c)
	}
	return calls
}

// wait waits until no session runs, or ctx ends.
func (d *drain) wait(ctx context.Context, log zerolog.Logger) error {
	done := make(chan struct{})
	guard.Go(log, "drain", func() {
		d.wg.Wait()
		close(done)
	})
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refuseWhileStopping admits c's session, or tells its client that the
// receiver is restarting and reports false: nothing of the session ran.
func (s *Server) refuseWhileStopping(c *call) bool {
	if s.drain.begin(c) {
		return false
	}
	sentence := restartingCommand
	if args, err := cmdline.Split(c.sess.RawCommand()); err == nil && len(args) > 0 && args[0] == "git-receive-pack" {
		sentence = restartingPush
	}
	c.log.Info().Msg("session refused: the receiver is stopping")
	tellUser(c.stderr(), sentence)
	_ = c.sess.Exit(1)
	return true
}

// Shutdown stops the receiver gracefully. New sessions are refused (see
// restartingPush) while the running pushes and commands finish, until ctx
// ends (shutdown_timeout); those still running then are told so and their
// connections closed, which cancels them as a dropped pusher would: a
// deploy takes back what it had prepared or switched. Shutdown waits up to
// cancelGrace for that (or, with nothing cancelled, up to connCloseGrace for
// the clients to hang up), then closes the listener, the connections left,
// the hook socket and the node connections. Its error is errShutdownTimeout
// when it had to cancel.
func (s *Server) Shutdown(ctx context.Context) error {
	n := s.drain.stop()
	s.log.Info().Int("sessions", n).Msg("stopping: new sessions are refused; waiting for the running ones to finish")
	err := s.drain.wait(ctx, s.log)
	if err != nil {
		cut := s.drain.cancel()
		s.log.Warn().Int("sessions", len(cut)).
			Msg("shutdown_timeout reached: cancelling the sessions still running; a deploy among them is undone as for a dropped pusher")
		for _, c := range cut {
			tellUser(c.stderr(), cutSentence)
		}
		err = errShutdownTimeout
	}
	if err == nil {
		// The clients of the sessions that ended close their connections
		// themselves; closing them first makes ssh print "Connection closed
		// by remote host" under a push that succeeded.
		graceCtx, cancel := context.WithTimeout(context.Background(), connCloseGrace)
		_ = s.ssh.Shutdown(graceCtx)
		cancel()
	}
	closeErr := s.ssh.Close()
	if err != nil {
		graceCtx, cancel := context.WithTimeout(context.Background(), cancelGrace)
		if s.drain.wait(graceCtx, s.log) != nil {
			s.log.Error().Dur("waited", cancelGrace).Msg("cancelled sessions still undoing; stopping without them (the next start repairs the nodes they left)")
		}
		cancel()
	}
	if s.hooks != nil {
		s.hooks.close()
	}
	s.apps.Close()
	if err == nil && closeErr != nil {
		err = fmt.Errorf("closing the SSH listener: %w", closeErr)
	}
	return err
}
