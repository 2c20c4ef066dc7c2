package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// maxPlan bounds the plan line (its spec) read from the receiver.
const maxPlan = maxSpec + 4096

// maxSwitchWait bounds how long a started release waits for the
// receiver's word to switch: a receiver that neither switches nor ends
// the session (a bug) does not hold the session forever. Phase 1 of the
// other nodes and releases of the push comes before that word, so it is
// generous.
const maxSwitchWait = 2 * time.Hour

// prepareVerb is phase 1 in one session (agentapi.Prepare): one SSH
// round trip per node instead of one each for manifest, receive and start.
// The receiver reads the first answer before it writes anything, so a
// node whose agent is another version, or that is live on this very
// release, is left as it was. The session then stays open for phase 2:
// the receiver's word switches the node at once, without starting
// another session and agent (DESIGN.md decision 12).
func prepareVerb(ctx context.Context, c *call, r agentapi.Prepare) error {
	// A receiver that hung up will not switch to the release: stop its
	// vassal rather than leave it running (as start does), and a switch
	// it cannot hear the end of goes back (as activate does).
	ctx, cancel := untilHangUp(ctx, c.stdout)
	defer cancel()
	if err := manifestVerb(ctx, c, agentapi.Manifest{Target: r.Target}); err != nil {
		return err
	}
	in := bufio.NewReaderSize(c.stdin, 1<<16)
	plan, err := readPlan(in)
	if err != nil || !plan.Go {
		return err
	}
	st, err := receive(instanceDir(c.root, r.Target), r.Number, in, false)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(c.stdout).Encode(st); err != nil {
		return err
	}
	out := &framedWriter{w: c.stdout}
	inst := c.instance(r.Target)
	if err := inst.start(ctx, r.Number, false, bytes.NewReader(plan.Spec), out); err != nil {
		return err
	}
	if err := out.say(agentapi.PrepareStarted); err != nil {
		return err
	}
	if ok, err := awaitSwitch(ctx, in); !ok {
		return err
	}
	prev, reloaded, err := inst.switchTo(ctx, r.Number)
	if err != nil {
		return err
	}
	inst.afterSwitch(ctx, r.Number, prev, reloaded, out, func() error {
		if err := out.say(agentapi.PrepareSwitched); err != nil {
			return err
		}
		// The rest waits for the end of input: the receiver ends it once
		// every node has switched, so that no node's aftermath (vassals
		// demoted and stopped, workers restarted: CPU work) slows the
		// others' switches.
		awaitEnd(ctx, in)
		return nil
	})
	return nil
}

// awaitEnd reads the receiver's input to its end (or the receiver's
// hang-up), for at most maxSwitchWait.
func awaitEnd(ctx context.Context, in *bufio.Reader) {
	waitForInput(ctx, func() { _, _ = io.Copy(io.Discard, in) })
}

// awaitSwitch waits for the receiver's word to switch. End of input (the
// receiver undoes the deploy, or went away) is no switch and no error.
func awaitSwitch(ctx context.Context, in *bufio.Reader) (bool, error) {
	var line []byte
	var err error
	if !waitForInput(ctx, func() { line, err = agentapi.ReadLine(in, len(agentapi.PrepareSwitch)+1) }) {
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("no word to switch came within %s: the release is started, not live", maxSwitchWait)
	}
	switch {
	case string(line) == agentapi.PrepareSwitch+"\n":
		return true, nil
	case errors.Is(err, io.EOF):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading the word to switch: %w", err)
	}
	return false, fmt.Errorf("reading the word to switch: got %q", line)
}

// waitForInput runs read, a blocking read of the receiver's input, and
// reports whether it returned before ctx ended (the receiver hung up) and
// within maxSwitchWait. When it did not, read goes on in the background,
// and what it sets must not be used.
func waitForInput(ctx context.Context, read func()) bool {
	done := make(chan struct{})
	go func() {
		read()
		close(done)
	}()
	timer := time.NewTimer(maxSwitchWait)
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-ctx.Done():
	case <-timer.C:
	}
	return false
}

// readPlan reads the receiver's plan line; none at all (the receiver
// closed our input) is a plan to do nothing.
func readPlan(in *bufio.Reader) (agentapi.PreparePlan, error) {
	var plan agentapi.PreparePlan
	line, err := agentapi.ReadLine(in, maxPlan)
	if errors.Is(err, io.EOF) && len(line) == 0 {
		return plan, nil
	}
	if err != nil {
		return plan, fmt.Errorf("reading the plan: %w", err)
	}
	if err := json.Unmarshal(line, &plan); err != nil {
		return plan, fmt.Errorf("reading the plan: %w", err)
	}
	return plan, nil
}

// framedWriter writes what it is given as agentapi.PrepareOutput lines
// of at most agentapi.MaxPrepareLine bytes (a longer line is cut, at a
// character's start), for one or several writers at once (a script's
// stdout and stderr).
type framedWriter struct {
	w       io.Writer
	mu      sync.Mutex
	midLine bool // the last write ended inside a line
	lineLen int  // bytes of that line written so far
}

// maxFramedContent is the most of a line one frame holds.
const maxFramedContent = agentapi.MaxPrepareLine - len(agentapi.PrepareOutput) - 1

func (f *framedWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]byte, 0, len(p)+len(agentapi.PrepareOutput)+1)
	for rest := p; len(rest) > 0; {
		if !f.midLine {
			out = append(out, agentapi.PrepareOutput...)
			f.midLine, f.lineLen = true, 0
		}
		piece := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			piece = rest[:i+1]
		}
		if room := maxFramedContent - f.lineLen; len(piece) > room {
			cut := room
			for back := 0; back < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(piece[cut]); back++ {
				cut--
			}
			out = append(append(out, piece[:cut]...), '\n')
			f.midLine = false
			rest = rest[cut:]
			continue
		}
		out = append(out, piece...)
		f.lineLen += len(piece)
		f.midLine = piece[len(piece)-1] != '\n'
		rest = rest[len(piece):]
	}
	if _, err := f.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// say ends a line left open, then writes line (one of the agent's own,
// not framed).
func (f *framedWriter) say(line string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.midLine {
		line = "\n" + line
		f.midLine = false
	}
	_, err := io.WriteString(f.w, line+"\n")
	return err
}
