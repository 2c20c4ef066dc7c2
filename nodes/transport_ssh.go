package nodes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// A node refusing a new session (all MaxSessions in use) is asked again
// this often, this many times.
const (
	sessionRetries    = 300
	sessionRetryDelay = 100 * time.Millisecond
)

// sshTransport runs commands on a node of the inventory over SSH: in
// sessions of the pooled connection to it (DESIGN.md decision 4).
type sshTransport struct {
	fleet  *Fleet
	node   Node
	client *gossh.Client // set by open
}

// open takes the pooled connection to the node, dialing when there is
// none, after dropping every pooled connection if the pinned host keys
// changed.
func (t *sshTransport) open(ctx context.Context) error {
	pins := ""
	if st, err := os.Stat(t.fleet.knownHostsPath()); err == nil {
		pins = fmt.Sprint(st.ModTime().UnixNano(), st.Size())
	}
	t.fleet.pool.checkPins(pins)
	c, err := t.fleet.pool.get(ctx, t.node, t.fleet.Dial)
	if err != nil {
		return err
	}
	t.client = c
	return nil
}

func (t *sshTransport) agentBin() string { return AgentPath }

func (t *sshTransport) uploadsAgent() bool { return true }

// interactive runs argv on a connection of its own, closed when the
// client leaves: sshd keeps a session whose command still runs until the
// whole connection goes, and only then hangs up on the agent, which stops
// the script (SSH signal requests are refused for root).
func (t *sshTransport) interactive(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, term *Terminal, argv []string) (int, error) {
	client, err := t.fleet.Dial(ctx, t.node)
	if err != nil {
		return -1, err
	}
	defer client.Close()
	go func() {
		<-ctx.Done()
		client.Close()
	}()
	own := &sshTransport{fleet: t.fleet, node: t.node, client: client}
	return own.runInteractive(ctx, stdin, stdout, stderr, term, argv)
}

// run runs argv in a session of the pooled connection.
func (t *sshTransport) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, argv []string) error {
	sess, err := t.session(ctx)
	if err != nil {
		return &notStartedError{err}
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(shellWords(argv)) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(gossh.SIGTERM)
		sess.Close()
		return ctx.Err()
	}
	var ee *gossh.ExitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.ExitStatus()}
	}
	var missing *gossh.ExitMissingError
	if errors.As(err, &missing) {
		return errDropped
	}
	return err
}

// shellWords is argv as a command line for the node's shell, which SSH
// hands it to: every word single-quoted.
func shellWords(argv []string) string {
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

// session opens a session on the pooled connection. A pooled connection
// that died since its last use is dialed again, once.
func (t *sshTransport) session(ctx context.Context) (*gossh.Session, error) {
	sess, err := openSession(ctx, t.client)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err() // cancelled: the connection may be fine
	}
	// sshd caps sessions per connection (MaxSessions, 10 by default):
	// when deploys of other apps hold them all, wait for one to end.
	var refused *gossh.OpenChannelError
	for tries := 0; errors.As(err, &refused) && tries < sessionRetries; tries++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(sessionRetryDelay):
		}
		sess, err = openSession(ctx, t.client)
	}
	if errors.As(err, &refused) {
		return nil, fmt.Errorf("node %s: no free SSH session: %w", t.node.Name, err)
	}
	if err != nil {
		t.fleet.pool.drop(t.node, t.client)
		// t.client keeps the dead connection when the node cannot be
		// dialed: the next command on this conn (undoing the deploy) must
		// fail the same way, not on a nil client.
		client, err := t.fleet.pool.get(ctx, t.node, t.fleet.Dial)
		if err != nil {
			return nil, err
		}
		t.client = client
		if sess, err = openSession(ctx, t.client); err != nil {
			return nil, fmt.Errorf("node %s: opening a session: %w", t.node.Name, err)
		}
	}
	return sess, nil
}

// sessionOpenTimeout bounds opening a session, which takes one round
// trip on a live connection: a node that stopped answering since the last
// keepalive (a cut link) fails its step now, and its connection is dialed
// again, rather than holding the deploy until the keepalive gives up.
const sessionOpenTimeout = 10 * time.Second

var errSessionTimeout = fmt.Errorf("no answer to opening a session within %s", sessionOpenTimeout)

// openSession is client.NewSession bounded by ctx and sessionOpenTimeout.
func openSession(ctx context.Context, client *gossh.Client) (*gossh.Session, error) {
	type opened struct {
		sess *gossh.Session
		err  error
	}
	done := make(chan opened, 1)
	go func() {
		sess, err := client.NewSession()
		done <- opened{sess, err}
	}()
	timer := time.NewTimer(sessionOpenTimeout)
	defer timer.Stop()
	var err error
	select {
	case o := <-done:
		return o.sess, o.err
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = errSessionTimeout
	}
	// Given up on: closed if it opens after all.
	go func() {
		if o := <-done; o.sess != nil {
			o.sess.Close()
		}
	}()
	return nil, err
}

// runInteractive is run for a person at the other end: stdin is
// copied by us, not by the session, whose Wait would otherwise block on a
// stdin that never ends after the command exited.
func (t *sshTransport) runInteractive(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, term *Terminal, argv []string) (int, error) {
	sess, err := t.session(ctx)
	if err != nil {
		return -1, err
	}
	defer sess.Close()
	if term != nil {
		if err := sess.RequestPty(term.Term, term.Height, term.Width, gossh.TerminalModes{}); err != nil {
			return -1, fmt.Errorf("node %s: a terminal: %w", t.node.Name, err)
		}
		go func() {
			for size := range term.Resize {
				_ = sess.WindowChange(size[1], size[0])
			}
		}()
	}
	in, err := sess.StdinPipe()
	if err != nil {
		return -1, err
	}
	sess.Stdout, sess.Stderr = stdout, stderr
	if err := sess.Start(shellWords(argv)); err != nil {
		return -1, fmt.Errorf("node %s: %w", t.node.Name, err)
	}
	go func() {
		_, _ = io.Copy(in, stdin)
		in.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// The agent turns the signal (or the hang-up of its terminal when
		// the session closes) into stopping the script's process group.
		_ = sess.Signal(gossh.SIGTERM)
		sess.Close()
		return -1, ctx.Err()
	}
	var ee *gossh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.ExitStatus(), nil
	}
	return -1, fmt.Errorf("node %s: %w", t.node.Name, err)
}
