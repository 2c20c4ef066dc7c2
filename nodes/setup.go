package nodes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gitreceive/gitreceive/hooks/termsafe"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// Setup brings every node of nodes up to this binary, in parallel
// (bounded): the agent is uploaded when its version differs, then the
// agent unpacks server-files and runs the setup script, which installs the
// stack plus packages, creates the app user and starts nginx and the uWSGI
// emperor. Rerunning it is safe and is how nodes are upgraded. Every line
// of output goes to out prefixed with the node's name.
func (f *Fleet) Setup(ctx context.Context, nodes []Node, packages []string, out io.Writer) error {
	version, err := localVersion(ctx, f.AgentBin)
	if err != nil {
		return err
	}
	var mu sync.Mutex // one line at a time, whole, from any node
	errs := make([]error, len(nodes))
	forEachNode(nodes, func(i int, n Node) {
		w := &lineWriter{line: func(line string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(out, "%-8s %s\n", n.Name, line)
		}}
		defer w.Flush()
		err := f.setup(ctx, n, version, packages, w)
		if errors.Is(err, errDropped) && ctx.Err() == nil {
			// Setup is idempotent, and a busy node can miss keepalives:
			// one more try on a new connection.
			fmt.Fprintf(w, "%v; setting up again\n", err)
			err = f.setup(ctx, n, version, packages, w)
		}
		if err != nil {
			errs[i] = fmt.Errorf("node %s: setup failed: %w", n.Name, err)
			fmt.Fprintf(w, "failed: %v\n", err)
		}
	})
	return errors.Join(errs...)
}

func (f *Fleet) setup(ctx context.Context, n Node, version string, packages []string, w io.Writer) error {
	c, err := f.connect(ctx, n)
	if err != nil {
		return err
	}
	if c.t.uploadsAgent() {
		installed, err := ensureAgent(ctx, c, version)
		if err != nil {
			return err
		}
		if installed {
			fmt.Fprintf(w, "agent: installed %s at %s\n", version, AgentPath)
		} else {
			fmt.Fprintf(w, "agent: %s, current\n", version)
		}
	}
	if err := c.run(ctx, nil, w, w, append([]string{c.agentBin(), "node"}, agentapi.Setup{Packages: packages}.Argv()...)...); err != nil {
		return err
	}
	return f.installSetupCerts(ctx, n, func(line string) { fmt.Fprintln(w, line) })
}

// ensureAgent installs this binary as c's agent unless the node has this
// version already; it says whether it installed.
func ensureAgent(ctx context.Context, c *conn, version string) (bool, error) {
	if !c.t.uploadsAgent() {
		return false, nil
	}
	var got bytes.Buffer
	_ = c.run(ctx, nil, &got, nil, AgentPath, "version")
	if strings.TrimSpace(got.String()) == version {
		return false, nil
	}
	if err := installAgent(ctx, c); err != nil {
		return false, fmt.Errorf("installing the agent: %w", err)
	}
	return true, nil
}

// lineWriter calls line with each whole line written to it (without the
// newline), so output from nodes working in parallel can be labelled and
// interleaved by line only. It is where every line a node prints enters
// the receiver (start's health checks, update_fetch output and app.log
// tails, logs, setup, services), so each line is made safe for a terminal
// here, whoever shows it next (unless raw: see LineWriter). A line longer
// than maxRelayLine is passed on in pieces: an app that logs without
// newlines (`logs -f`) must not make the receiver hold all of it.
//
// Write runs on whatever goroutine copies the node's output (os/exec's,
// x/crypto/ssh's), which nothing recovers; line is the receiver's code. So
// a panic in line is kept, writing fails from then on, and Flush, called
// by the goroutine that waits for the node, raises it again there.
type lineWriter struct {
	line     func(string)
	raw      bool
	buf      []byte
	panicked *Panic
}

// maxRelayLine is the longest piece of a line lineWriter holds.
const maxRelayLine = 64 << 10

var errLinePanicked = errors.New("relaying the node's output failed (internal error)")

func (l *lineWriter) Write(p []byte) (n int, err error) {
	if l.panicked != nil {
		return 0, errLinePanicked
	}
	defer func() {
		if l.panicked != nil {
			n, err = 0, errLinePanicked
		}
	}()
	defer catchPanic(&l.panicked, "")
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if (i < 0 || i > maxRelayLine) && len(l.buf) > maxRelayLine {
			// Cut at a character's start, so that escaping the piece
			// does not show a split character as invalid bytes.
			cut := maxRelayLine
			for back := 0; back < utf8.UTFMax-1 && !utf8.RuneStart(l.buf[cut]); back++ {
				cut--
			}
			l.pass(l.buf[:cut])
			l.buf = l.buf[cut:]
			continue
		}
		if i < 0 {
			if len(l.buf) == 0 {
				l.buf = nil // let a long line's array go
			}
			return len(p), nil
		}
		l.pass(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

// Flush passes on a last line that has no newline, or raises the panic of
// a line passed on by Write.
func (l *lineWriter) Flush() {
	if l.panicked != nil {
		panic(l.panicked)
	}
	if len(l.buf) > 0 {
		l.pass(l.buf)
		l.buf = nil
	}
}

func (l *lineWriter) pass(b []byte) {
	if l.raw {
		l.line(string(b))
		return
	}
	l.line(termsafe.String(string(b)))
}

// LineWriter is lineWriter for the receiver's own streams of node output
// (`run --all-nodes` labels each line of a script with its node): each
// line, made safe for a terminal unless raw (the script has one: ssh -t),
// goes to line. Call Flush at the end. Not for concurrent writers: give
// each stream its own.
type LineWriter struct{ lw lineWriter }

// NewLineWriter returns a LineWriter calling line.
func NewLineWriter(line func(string), raw bool) *LineWriter {
	return &LineWriter{lw: lineWriter{line: line, raw: raw}}
}

func (w *LineWriter) Write(p []byte) (int, error) { return w.lw.Write(p) }

// Flush passes on a last line that has no newline.
func (w *LineWriter) Flush() { w.lw.Flush() }
