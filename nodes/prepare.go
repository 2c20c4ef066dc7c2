package nodes

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gitreceive/gitreceive/hooks/termsafe"
	"github.com/gitreceive/gitreceive/manifest"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// prepareOn runs phase 1 on one node in one agent session (agentapi.Prepare):
// the agent's version and current manifest, the missing contents, the
// start and its health check, pipelined, where there used to be a
// session for each. It returns the node's previous release. Two answers
// end the session before anything is sent, and phase 1 starts over after
// the fix: an agent of another version (uploaded again, once), and a node
// live on this very release, which no deploy recorded (taken back, once).
// A node whose live release was changed on disk gets the whole release in
// sessions of their own (receive --full, then start). It records the
// node's previous release in d, and the session, left open for the
// switch, when the release was made in it.
func prepareOn(ctx context.Context, d *nodeDeploy, r Release, version string, say func(string)) (Report, error) {
	rep := Report{}
	c := d.conn
	name := c.node.Name
	installed, tookBack := false, false
	for {
		s, err := openPrepare(ctx, c, r)
		// No agent, an agent without the verb, or another version:
		// (re)install it. A node that could not be reached is not dialed
		// again for that.
		upgrade := c.t.uploadsAgent() && !installed && (err == nil && s.current.Agent != version || err != nil && !notStarted(err))
		if upgrade {
			if err == nil {
				_ = s.end()
			}
			if err := installAgent(ctx, c); err != nil {
				return rep, fmt.Errorf("node %s: installing the agent: %w", name, err)
			}
			installed = true
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("node %s: %w", name, err)
		}
		cur := s.current
		if cur.Release == r.Number && !tookBack {
			// Live on the very release this deploy makes, which no deploy
			// recorded: the receiver was killed, or lost the node, while
			// an earlier attempt switched it. Back to where the fleet is
			// first.
			_ = s.end()
			rel, err := releasesOn(ctx, c, r.App, r.Instance)
			back := 0
			if err == nil {
				back, err = takeBack(ctx, c, r.App, r.Instance, rel.Releases)
			}
			if err != nil {
				return rep, fmt.Errorf("node %s: it serves v%d, left live by an interrupted deploy, and switching it back failed: %w", name, r.Number, err)
			}
			rep.TookBack, rep.Back, tookBack = true, back, true
			continue
		}
		d.prev = cur.Release
		need := manifest.Needed(cur.Manifest, r.Manifest)
		st, received, err := s.finish(ctx, r, need, say)
		if err == nil {
			d.session = s
		}
		if !received && exitCode(err) == agent.ExitPreviousDamaged {
			// Files of the live release were changed on the node: hard
			// links to them cannot be trusted, so send everything.
			rep.Full = true
			need = manifest.Needed(nil, r.Manifest)
			if st, err = receive(ctx, c, r, need, true); err == nil {
				received = true
				err = start(ctx, c, r, false, say)
			}
		}
		if received {
			rep.Files, rep.Bytes = len(need), st.Received
		}
		if err != nil {
			return rep, fmt.Errorf("node %s: %w", name, err)
		}
		return rep, nil
	}
}

// prepareSession is one prepare verb running on a node. Once the release
// started, the session stays open for the switch (switchNow) or its end
// (end): either ends it, and end collects what the agent printed after
// the switch.
type prepareSession struct {
	c     *conn
	stdin *io.PipeWriter
	out   *bufio.Reader
	done  chan error // the session's end
	// kill ends the session; detach stops the deploy's context from doing
	// so once the release started: phase 2 runs to its end whatever it
	// says (Switch).
	kill    context.CancelFunc
	detach  func() bool
	current agent.Status
	// lines are the warnings the agent printed after the start, made safe
	// for a terminal.
	lines  []string
	ended  bool
	endErr error
}

// openPrepare starts the prepare verb and reads its first answer.
func openPrepare(ctx context.Context, c *conn, r Release) (*prepareSession, error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	sessionCtx, kill := context.WithCancel(context.WithoutCancel(ctx))
	s := &prepareSession{c: c, stdin: inW, out: bufio.NewReader(outR), done: make(chan error, 1), kill: kill,
		detach: context.AfterFunc(ctx, kill)}
	go func() {
		err := c.agent(sessionCtx, inR, outW, agentapi.Prepare{Release: agentapi.At(r.App, r.Instance).Release(r.Number)}.Argv()...)
		inR.CloseWithError(io.ErrClosedPipe)
		outW.Close()
		s.done <- err
	}()
	if err := s.readAnswer(&s.current, "its manifest"); err != nil {
		return nil, err
	}
	return s, nil
}

// readLine reads one line of the agent, without its newline, of at most
// max bytes (0: any length; an answer holds a whole manifest).
func (s *prepareSession) readLine(max int) (string, error) {
	line, err := agentapi.ReadLine(s.out, max)
	if err != nil {
		return "", err
	}
	return string(line[:len(line)-1]), nil
}

// readFailed ends the session after reading what failed: at the end of
// the agent's output, the session's error says why.
func (s *prepareSession) readFailed(err error, what string) error {
	if errors.Is(err, io.EOF) {
		return s.endWithout(what)
	}
	_ = s.end()
	return fmt.Errorf("reading %s: %w", what, err)
}

// readAnswer reads one JSON line of the agent into v; when there is none,
// the session's error says why.
func (s *prepareSession) readAnswer(v any, what string) error {
	line, err := s.readLine(0)
	if err != nil {
		return s.readFailed(err, what)
	}
	if err := json.Unmarshal([]byte(line), v); err != nil {
		_ = s.end()
		return fmt.Errorf("reading %s: %w", what, err)
	}
	return nil
}

// readUntil passes each output line of the agent to say until the line
// want; any other line, or the session's end, is an error.
func (s *prepareSession) readUntil(want, what string, say func(string)) error {
	for {
		line, err := s.readLine(agentapi.MaxPrepareLine)
		if err != nil {
			return s.readFailed(err, what)
		}
		if text, ok := strings.CutPrefix(line, agentapi.PrepareOutput); ok {
			say(termsafe.String(text))
			continue
		}
		if line == want {
			return nil
		}
		_ = s.end()
		return fmt.Errorf("reading %s: the agent said %q", what, termsafe.String(line))
	}
}

// endWithout ends the session after the agent stopped before saying
// what: its error, or that it said nothing.
func (s *prepareSession) endWithout(what string) error {
	if err := s.end(); err != nil {
		return err
	}
	return fmt.Errorf("the agent ended without %s", what)
}

// end ends the session: the agent reads the end of its input (no plan, or
// no switch, is nothing more done), and what it prints until it exits is
// kept as warnings. It returns the session's error, the same on every
// call.
func (s *prepareSession) end() error {
	if s.ended {
		return s.endErr
	}
	s.stdin.Close()
	for {
		line, err := s.readLine(agentapi.MaxPrepareLine)
		if err != nil {
			break
		}
		if text, ok := strings.CutPrefix(line, agentapi.PrepareOutput); ok {
			s.lines = append(s.lines, termsafe.String(text))
		}
	}
	_, _ = io.Copy(io.Discard, s.out)
	s.ended, s.endErr = true, <-s.done
	s.detach()
	return s.endErr
}

// finish sends the plan, the manifest and the needed contents, reads the
// receive's answer, then passes each line of the start to say, and leaves
// the session open, waiting for the switch. received says whether the
// release was built.
func (s *prepareSession) finish(ctx context.Context, r Release, need []string, say func(string)) (st agent.Status, received bool, err error) {
	specJSON, err := json.Marshal(r.specFor(s.c.node.Name))
	if err != nil {
		_ = s.end()
		return st, false, err
	}
	plan, err := json.Marshal(agentapi.PreparePlan{Go: true, Spec: specJSON})
	if err != nil {
		_ = s.end()
		return st, false, err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	wait := writeRelease(ctx, s.c.node.Name, r, need, append(plan, '\n'), s.stdin, true)
	defer wait()
	if err := s.readAnswer(&st, "the receive's answer"); err != nil {
		stop()
		return st, false, err
	}
	if err := s.readUntil(agentapi.PrepareStarted, "the start's end", say); err != nil {
		return st, true, err
	}
	if !s.detach() {
		// The deploy was cancelled: the session is ending.
		_ = s.end()
		return st, true, context.Cause(ctx)
	}
	return st, true, nil
}

// switchNow gives the agent the word to switch and waits for its answer
// (the agent goes on after it: end waits for the rest). answered says
// that the node switched; without it, err says why, and may be a
// connection lost after the node switched.
func (s *prepareSession) switchNow(ctx context.Context) (answered bool, err error) {
	stop := context.AfterFunc(ctx, s.kill)
	defer stop()
	if _, err := io.WriteString(s.stdin, agentapi.PrepareSwitch+"\n"); err != nil {
		return false, s.endWithout("switching")
	}
	if err := s.readUntil(agentapi.PrepareSwitched, "switching", func(line string) { s.lines = append(s.lines, line) }); err != nil {
		return false, err
	}
	return true, nil
}

var errContentsUnread = errors.New("the release's contents could not be read")

// writeRelease writes header, r's manifest and a tar of the needed
// contents to w in a goroutine, and closes w, unless keepOpen (a prepare
// session: the word to switch follows) and it succeeded. WriteContents is the
// caller's code (reading git): wait re-raises a panic in it in the
// caller's goroutine, once the writing has stopped.
func writeRelease(ctx context.Context, node string, r Release, need []string, header []byte, w *io.PipeWriter, keepOpen bool) (wait func()) {
	var panicked *Panic
	written := make(chan struct{})
	go func() {
		defer close(written)
		defer catchPanic(&panicked, node)
		// Closed with an error unless everything was written (a panic in
		// WriteContents too): the agent stops reading, and the session
		// ends, rather than both waiting for the rest.
		var err error
		sent := false
		defer func() {
			switch {
			case !sent:
				w.CloseWithError(cmp.Or(err, errContentsUnread))
			case !keepOpen:
				w.Close()
			}
		}()
		_, err = w.Write(header)
		if err == nil {
			err = json.NewEncoder(w).Encode(r.Manifest)
		}
		if err == nil {
			err = r.WriteContents(ctx, need, w)
		}
		sent = err == nil
	}()
	return func() {
		<-written
		if panicked != nil {
			panic(panicked)
		}
	}
}
