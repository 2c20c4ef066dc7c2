package nodes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gitreceive/gitreceive/hooks/termsafe"
)

// AgentPath is where the node agent (this same binary) lives on a node.
const AgentPath = "/usr/local/lib/gitreceive/gitreceive"

// conn runs commands, mostly the agent's, on one node over its transport.
type conn struct {
	fleet *Fleet
	node  Node
	t     transport
}

// connect returns a conn to n over its transport, opened.
func (f *Fleet) connect(ctx context.Context, n Node) (*conn, error) {
	t := f.transportTo(n)
	if err := t.open(ctx); err != nil {
		return nil, err
	}
	return &conn{fleet: f, node: n, t: t}, nil
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
	return c.t.agentBin()
}

// run runs argv on the node. With stderr nil, what the command prints
// there becomes the error's message.
func (c *conn) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, argv ...string) error {
	var errBuf bytes.Buffer
	if stderr == nil {
		stderr = &errBuf
	}
	err := c.t.run(ctx, stdin, stdout, stderr, argv)
	var ee *exitError
	if errors.As(err, &ee) {
		ee.msg = nodeMessage(&errBuf)
	}
	return err
}
