package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// maxPlan bounds the plan line (its spec) read from the receiver.
const maxPlan = maxSpec + 4096

// prepareVerb is phase 1 in one session (agentapi.Prepare): one SSH
// round trip per node instead of one each for manifest, receive and start.
// The receiver reads the first answer before it writes anything, so a
// node whose agent is another version, or that is live on this very
// release, is left as it was.
func prepareVerb(ctx context.Context, c *call, r agentapi.Prepare) error {
	// A receiver that hung up will not switch to the release: stop its
	// vassal rather than leave it running (as start does).
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
	return c.instance(r.Target).start(ctx, r.Number, false, bytes.NewReader(plan.Spec), c.stdout)
}

// readPlan reads the receiver's plan line; none at all (the receiver
// closed our input) is a plan to do nothing.
func readPlan(in *bufio.Reader) (agentapi.PreparePlan, error) {
	var plan agentapi.PreparePlan
	line, err := readBoundedLine(in, maxPlan)
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

// readBoundedLine reads one line of at most max bytes from in.
func readBoundedLine(in *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := in.ReadSlice('\n')
		line = append(line, chunk...) // copied: the next read reuses the buffer
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
		if len(line) > max {
			return nil, fmt.Errorf("a line is longer than %d bytes", max)
		}
	}
}
