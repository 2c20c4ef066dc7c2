package nodes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitreceive/gitreceive/hooks/termsafe"
)

// AgentPath is where the node agent (this same binary) lives on a node.
const AgentPath = "/usr/local/lib/gitreceive/gitreceive"

// A node refusing a new session (all MaxSessions in use) is asked again
// this often, this many times.
const (
	sessionRetries    = 300
	sessionRetryDelay = 100 * time.Millisecond
)

// conn runs commands on one node: over the pooled SSH connection, or, for
// the local node, as child processes of the receiver. Both carry the same
// agent protocol (stdin, stdout, stderr and the exit code).
type conn struct {
	fleet  *Fleet
	node   Node
	client *gossh.Client // nil for the local node
}

// connect returns a conn to n, reusing the pooled SSH connection.
func (f *Fleet) connect(ctx context.Context, n Node) (*conn, error) {
	if n.Local {
		return &conn{fleet: f, node: n}, nil
	}
	pins := ""
	if st, err := os.Stat(f.knownHostsPath()); err == nil {
		pins = fmt.Sprint(st.ModTime().UnixNano(), st.Size())
	}
	f.pool.checkPins(pins)
	c, err := f.pool.get(ctx, n, f.Dial)
	if err != nil {
		return nil, err
	}
	return &conn{fleet: f, node: n, client: c}, nil
}

// exitError is a command that ran and failed: its exit code and what it
// said on stderr (made safe for a terminal by nodeMessage: it may hold an
// app's log lines, and goes to pushers, operators and the receiver's log).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// notStartedError is a command that never started: the node could not be
// reached, or would not open a session.
type notStartedError struct{ err error }

func (e *notStartedError) Error() string { return e.err.Error() }
func (e *notStartedError) Unwrap() error { return e.err }

// notStarted reports whether err is (or wraps) a command that never started.
func notStarted(err error) bool {
	var ns *notStartedError
	return errors.As(err, &ns)
}

// exitCode is err's exit code, or -1 when the command did not run to an end.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return -1
}

// agent runs the node agent with args (validated names only).
func (c *conn) agent(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) error {
	return c.run(ctx, stdin, stdout, nil, append([]string{c.agentBin(), "node"}, args...)...)
}

// agentWarnings runs the agent like agent; what it prints on stderr is
// the error's message when it fails, and its warnings when it succeeds.
func (c *conn) agentWarnings(ctx context.Context, args ...string) (string, error) {
	var stderr bytes.Buffer
	err := c.run(ctx, nil, nil, &stderr, append([]string{c.agentBin(), "node"}, args...)...)
	var ee *exitError
	if errors.As(err, &ee) {
		ee.msg = nodeMessage(&stderr)
	}
	if err != nil {
		return "", err
	}
	return nodeMessage(&stderr), nil
}

// nodeMessage is what a command printed on a node, trimmed, as it may be
// shown on a terminal.
func nodeMessage(b *bytes.Buffer) string {
	return termsafe.String(strings.TrimSpace(b.String()))
}

// agentBin is the agent's path on the node.
func (c *conn) agentBin() string {
	if c.node.Local {
		return c.fleet.AgentBin
	}
	return AgentPath
}

// run runs argv on the node. With stderr nil, what the command prints
// there becomes the error's message.
func (c *conn) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, argv ...string) error {
	var errBuf bytes.Buffer
	if stderr == nil {
		stderr = &errBuf
	}
	var err error
	if c.node.Local {
		err = runLocal(ctx, stdin, stdout, stderr, argv)
	} else {
		err = c.runSSH(ctx, stdin, stdout, stderr, argv)
	}
	var ee *exitError
	if errors.As(err, &ee) {
		ee.msg = nodeMessage(&errBuf)
	}
	return err
}

// runSSH runs argv in a session of the pooled connection.
func (c *conn) runSSH(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, argv []string) error {
	sess, err := c.session(ctx)
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
		return errors.New("the connection to the node dropped before its answer arrived")
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
func (c *conn) session(ctx context.Context) (*gossh.Session, error) {
	sess, err := openSession(ctx, c.client)
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
		sess, err = openSession(ctx, c.client)
	}
	if errors.As(err, &refused) {
		return nil, fmt.Errorf("node %s: no free SSH session: %w", c.node.Name, err)
	}
	if err != nil {
		c.fleet.pool.drop(c.node, c.client)
		// c.client keeps the dead connection when the node cannot be
		// dialed: the next command on this conn (undoing the deploy) must
		// fail the same way, not on a nil client.
		client, err := c.fleet.pool.get(ctx, c.node, c.fleet.Dial)
		if err != nil {
			return nil, err
		}
		c.client = client
		if sess, err = openSession(ctx, c.client); err != nil {
			return nil, fmt.Errorf("node %s: opening a session: %w", c.node.Name, err)
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

// runLocal runs argv as a child process in its own process group, killed
// whole when ctx ends.
func runLocal(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, argv []string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return &exitError{code: ee.ExitCode()}
	}
	return err
}
