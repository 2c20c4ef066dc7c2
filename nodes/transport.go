package nodes

import (
	"context"
	"errors"
	"io"
)

// transport carries the agent protocol (argv, stdin, stdout, stderr and
// the exit code) to one node. Which one a node gets is decided in one
// place, Fleet.transportTo: SSH for a node of the inventory, child
// processes for the receiver host itself (LocalNode), a scripted fake in
// the package's unit tests.
type transport interface {
	// open readies the transport for run (for SSH: the pooled
	// connection, dialed when there is none).
	open(ctx context.Context) error
	// run runs argv on the node. A command that ran and failed is an
	// *exitError; one that never started (the node could not be reached,
	// or would not open a session) a *notStartedError; ending ctx stops
	// it and returns ctx's error.
	run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, argv []string) error
	// interactive runs argv for a person at the other end (RunScript), on
	// a terminal with term, and returns its exit code; err is for not
	// reaching the node. It needs no open.
	interactive(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, term *Terminal, argv []string) (int, error)
	// agentBin is the agent's path on the node.
	agentBin() string
	// uploadsAgent says whether the node's agent is a copy of this binary
	// that the receiver uploads when its version differs (installAgent),
	// rather than this binary itself.
	uploadsAgent() bool
}

// transportTo returns the transport to n, not yet opened.
func (f *Fleet) transportTo(n Node) transport {
	if f.newTransport != nil {
		return f.newTransport(n)
	}
	if n.Local {
		return localTransport{bin: f.AgentBin}
	}
	return &sshTransport{fleet: f, node: n}
}

// errDropped is a command whose connection went away before the node said
// how it ended: it may or may not have run to its end.
var errDropped = errors.New("the connection to the node dropped before its answer arrived")
