package nodes

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

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
// sessions of their own (receive --full, then start).
func prepareOn(ctx context.Context, c *conn, r Release, version string, say func(string)) (int, Report, error) {
	rep := Report{}
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
				_ = s.cancel()
			}
			if err := installAgent(ctx, c); err != nil {
				return 0, rep, fmt.Errorf("node %s: installing the agent: %w", name, err)
			}
			installed = true
			continue
		}
		if err != nil {
			return 0, rep, fmt.Errorf("node %s: %w", name, err)
		}
		cur := s.current
		if cur.Release == r.Number && !tookBack {
			// Live on the very release this deploy makes, which no deploy
			// recorded: the receiver was killed, or lost the node, while
			// an earlier attempt switched it. Back to where the fleet is
			// first.
			_ = s.cancel()
			rel, err := releasesOn(ctx, c, r.App, r.Instance)
			back := 0
			if err == nil {
				back, err = takeBack(ctx, c, r.App, r.Instance, rel.Releases)
			}
			if err != nil {
				return 0, rep, fmt.Errorf("node %s: it serves v%d, left live by an interrupted deploy, and switching it back failed: %w", name, r.Number, err)
			}
			rep.TookBack, rep.Back, tookBack = true, back, true
			continue
		}
		need := manifest.Needed(cur.Manifest, r.Manifest)
		st, received, err := s.finish(ctx, r, need, say)
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
			return cur.Release, rep, fmt.Errorf("node %s: %w", name, err)
		}
		return cur.Release, rep, nil
	}
}

// prepareSession is one prepare verb running on a node.
type prepareSession struct {
	c       *conn
	stdin   *io.PipeWriter
	out     *bufio.Reader
	done    chan error // the session's end
	current agent.Status
}

// openPrepare starts the prepare verb and reads its first answer.
func openPrepare(ctx context.Context, c *conn, r Release) (*prepareSession, error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &prepareSession{c: c, stdin: inW, out: bufio.NewReader(outR), done: make(chan error, 1)}
	go func() {
		err := c.agent(ctx, inR, outW, agentapi.Prepare{Release: agentapi.At(r.App, r.Instance).Release(r.Number)}.Argv()...)
		inR.CloseWithError(io.ErrClosedPipe)
		outW.Close()
		s.done <- err
	}()
	if err := s.readAnswer(&s.current, "its manifest"); err != nil {
		return nil, err
	}
	return s, nil
}

// readAnswer reads one JSON line of the agent into v; when there is none,
// the session's error says why.
func (s *prepareSession) readAnswer(v any, what string) error {
	line, err := s.out.ReadBytes('\n')
	if err != nil {
		s.stdin.Close()
		_, _ = io.Copy(io.Discard, s.out)
		if err := <-s.done; err != nil {
			return err
		}
		return fmt.Errorf("the agent ended without %s", what)
	}
	if err := json.Unmarshal(line, v); err != nil {
		_ = s.cancel()
		return fmt.Errorf("reading %s: %w", what, err)
	}
	return nil
}

// cancel ends the session with nothing done: no plan is a plan to stop.
func (s *prepareSession) cancel() error {
	s.stdin.Close()
	_, _ = io.Copy(io.Discard, s.out)
	return <-s.done
}

// finish sends the plan, the manifest and the needed contents, reads the
// receive's answer, then passes each line of the start to say. received
// says whether the release was built.
func (s *prepareSession) finish(ctx context.Context, r Release, need []string, say func(string)) (st agent.Status, received bool, err error) {
	specJSON, err := json.Marshal(r.specFor(s.c.node.Name))
	if err != nil {
		_ = s.cancel()
		return st, false, err
	}
	plan, err := json.Marshal(agentapi.PreparePlan{Go: true, Spec: specJSON})
	if err != nil {
		_ = s.cancel()
		return st, false, err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	wait := writeRelease(ctx, s.c.node.Name, r, need, append(plan, '\n'), s.stdin)
	err = s.readAnswer(&st, "the receive's answer")
	if err != nil {
		stop()
		wait()
		return st, false, err
	}
	lines := &lineWriter{line: say}
	_, _ = io.Copy(lines, s.out)
	lines.Flush()
	err = <-s.done
	stop()
	wait()
	return st, true, err
}

// writeRelease writes header, r's manifest and a tar of the needed
// contents to w in a goroutine, and closes w. WriteContents is the
// caller's code (reading git): wait re-raises a panic in it in the
// caller's goroutine, once the writing has stopped.
func writeRelease(ctx context.Context, node string, r Release, need []string, header []byte, w *io.PipeWriter) (wait func()) {
	var panicked *Panic
	written := make(chan struct{})
	go func() {
		defer close(written)
		defer catchPanic(&panicked, node)
		err := errors.New("the release's contents could not be read")
		defer func() { w.CloseWithError(err) }()
		_, err = w.Write(header)
		if err == nil {
			err = json.NewEncoder(w).Encode(r.Manifest)
		}
		if err == nil {
			err = r.WriteContents(ctx, need, w)
		}
	}()
	return func() {
		<-written
		if panicked != nil {
			panic(panicked)
		}
	}
}
