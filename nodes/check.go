package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// maxParallel bounds how many nodes are talked to at once.
const maxParallel = 16

// Status is what `nodes check` learns about one node.
type Status struct {
	Node      Node
	Err       error         // nil: reachable with the pinned host key and our key
	Latency   time.Duration // login time (0 for the local node)
	Agent     string        // the agent's version; "" when it is missing or too old to answer
	FreeDisk  int64         // bytes free where releases live
	Instances []agent.Instance
}

// Check logs in to every node of nodes (in parallel, bounded) and reports.
func (f *Fleet) Check(ctx context.Context, nodes []Node) []Status {
	out := make([]Status, len(nodes))
	forEachNode(nodes, func(i int, n Node) { out[i] = f.check(ctx, n) })
	return out
}

// forEachNode runs fn for every node, at most maxParallel at once, and
// returns when all have finished. A panic in fn is raised again here, in
// the caller's goroutine, once the other nodes are done (see Panic).
func forEachNode(nodes []Node, fn func(i int, n Node)) { forEachNodeLimit(nodes, maxParallel, fn) }

// forEachNodeUnbounded runs fn for every node at once: for work that never
// ends on its own (following logs), which a bound would starve.
func forEachNodeUnbounded(nodes []Node, fn func(i int, n Node)) {
	forEachNodeLimit(nodes, max(len(nodes), 1), fn)
}

func forEachNodeLimit(nodes []Node, limit int, fn func(i int, n Node)) {
	sem := make(chan struct{}, limit)
	panics := make([]*Panic, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer catchPanic(&panics[i], n.Name)
			sem <- struct{}{}
			defer func() { <-sem }()
			fn(i, n)
		}()
	}
	wg.Wait()
	raisePanics(panics)
}

func (f *Fleet) check(ctx context.Context, n Node) Status {
	st := Status{Node: n}
	start := time.Now()
	c, err := f.connect(ctx, n)
	if err != nil {
		st.Err = err
		return st
	}
	st.Latency = time.Since(start)
	var out bytes.Buffer
	if err := c.agent(ctx, nil, &out, agentapi.Status{}.Argv()...); err == nil {
		var ns agent.NodeStatus
		if err := json.Unmarshal(out.Bytes(), &ns); err != nil {
			st.Err = fmt.Errorf("node %s: reading the agent's status: %w", n.Name, err)
			return st
		}
		st.Agent, st.FreeDisk, st.Instances = ns.Agent, ns.FreeDisk, ns.Instances
		return st
	}
	// No agent yet (or one too old to have `status`): the node is
	// reachable all the same; report the disk as df sees it.
	out.Reset()
	// /srv holds the releases once set up; before that, the root file system.
	if err := c.run(ctx, nil, &out, nil, "sh", "-c", "df -Pk /srv 2>/dev/null || df -Pk /"); err != nil {
		st.Err = fmt.Errorf("node %s: df: %w", n.Name, err)
		return st
	}
	st.FreeDisk, st.Err = parseDfAvail(out.String())
	if st.Err != nil {
		st.Err = fmt.Errorf("node %s: %w", n.Name, st.Err)
	}
	return st
}

// parseDfAvail reads the "Available" column (KiB) of `df -Pk` output.
func parseDfAvail(out string) (int64, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		return 0, fmt.Errorf("unexpected df output %q", out)
	}
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 4 {
		return 0, fmt.Errorf("unexpected df output %q", out)
	}
	kb, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("unexpected df output %q", out)
	}
	return kb * 1024, nil
}
