package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitreceive/gitreceive/nodes/agent"
)

// AgentPath is where the node agent (this same binary) lives on a node.
const AgentPath = "/usr/local/lib/gitreceive/gitreceive"

// Release is what a deploy sends to every node.
type Release struct {
	App      string
	Instance string
	Number   int
	Manifest agent.Manifest
	// WriteContents writes a tar of the contents with these sha256 hashes,
	// each entry a regular file named by its hash.
	WriteContents func(ctx context.Context, hashes []string, w io.Writer) error
}

// Report is one node's outcome of phase 1.
type Report struct {
	Node     Node
	Err      error
	Files    int   // files needed (sent) by this node
	Bytes    int64 // bytes of content the node received
	Duration time.Duration
}

// Deploy sends r to every node in parallel (bounded) and, only when every
// node has built and verified it, switches them all (DESIGN.md decision
// 6). A failure before the switch removes vN wherever it was made and
// leaves the old release serving; a failure during the switch points the
// switched nodes back. agentBin is the local binary uploaded as the agent
// when a node's copy differs. ready is called as each node finishes phase 1.
func (f *Fleet) Deploy(ctx context.Context, nodes []Node, r Release, agentBin string, ready func(Report)) error {
	version, err := localVersion(ctx, agentBin)
	if err != nil {
		return err
	}
	type conn struct {
		client *gossh.Client
		prev   int
	}
	conns := make([]conn, len(nodes))
	reports := make([]Report, len(nodes))
	defer func() {
		for _, c := range conns {
			if c.client != nil {
				c.client.Close()
			}
		}
	}()

	// Phase 1: upload, build and verify everywhere.
	forEachNode(nodes, func(i int, n Node) {
		start := time.Now()
		c, err := f.Dial(ctx, n)
		if err == nil {
			conns[i].client = c
			conns[i].prev, reports[i], err = upload(ctx, c, n, r, agentBin, version)
		}
		reports[i].Node, reports[i].Err, reports[i].Duration = n, err, time.Since(start)
		ready(reports[i])
	})
	var failed []string
	for _, rep := range reports {
		if rep.Err != nil {
			failed = append(failed, rep.Err.Error())
		}
	}
	if len(failed) > 0 || ctx.Err() != nil {
		for _, c := range conns {
			if c.client != nil {
				_ = runAgent(context.WithoutCancel(ctx), c.client, nil, nil, "abort", r.App, r.Instance, strconv.Itoa(r.Number))
			}
		}
		if len(failed) == 0 {
			return ctx.Err()
		}
		return errors.New(strings.Join(failed, "; "))
	}

	// Phase 2: switch every node; on a failure, switch the others back.
	for i, c := range conns {
		err := runAgent(ctx, c.client, nil, nil, "activate", r.App, r.Instance, strconv.Itoa(r.Number))
		if err == nil {
			continue
		}
		err = fmt.Errorf("node %s: switching to v%d: %w", nodes[i].Name, r.Number, err)
		for j := 0; j < i; j++ {
			if conns[j].prev > 0 {
				_ = runAgent(context.WithoutCancel(ctx), conns[j].client, nil, nil, "activate", r.App, r.Instance, strconv.Itoa(conns[j].prev))
			}
		}
		return err
	}
	return nil
}

// upload runs phase 1 on one node and returns its previous release.
func upload(ctx context.Context, c *gossh.Client, n Node, r Release, agentBin, version string) (int, Report, error) {
	rep := Report{}
	// The manifest answer also says which agent answered: one round trip
	// when the agent is current, an upload and a second try when it is not.
	cur, err := readManifest(ctx, c, r)
	if err != nil || cur.Agent != version {
		if err := installAgent(ctx, c, agentBin); err != nil {
			return 0, rep, fmt.Errorf("node %s: installing the agent: %w", n.Name, err)
		}
		if cur, err = readManifest(ctx, c, r); err != nil {
			return 0, rep, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	need := agent.Needed(cur.Manifest, r.Manifest)
	rep.Files = len(need)

	var out bytes.Buffer
	pr, pw := io.Pipe()
	go func() {
		err := json.NewEncoder(pw).Encode(r.Manifest)
		if err == nil {
			err = r.WriteContents(ctx, need, pw)
		}
		pw.CloseWithError(err)
	}()
	err = runAgent(ctx, c, pr, &out, "receive", r.App, r.Instance, strconv.Itoa(r.Number))
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return cur.Release, rep, fmt.Errorf("node %s: %w", n.Name, err)
	}
	var st agent.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		return cur.Release, rep, fmt.Errorf("node %s: reading its answer: %w", n.Name, err)
	}
	rep.Bytes = st.Received
	return cur.Release, rep, nil
}

// runAgent runs the agent with args (validated names only) on the node.
func runAgent(ctx context.Context, c *gossh.Client, stdin io.Reader, stdout io.Writer, args ...string) error {
	return runRemote(ctx, c, stdin, stdout, append([]string{AgentPath, "node"}, args...)...)
}

// runRemote runs argv on the node. SSH carries a command line that the
// node's shell parses, so every word is single-quoted.
func runRemote(ctx context.Context, c *gossh.Client, stdin io.Reader, stdout io.Writer, argv ...string) error {
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	var stderr bytes.Buffer
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, &stderr
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run(strings.Join(quoted, " ")) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Close()
		return ctx.Err()
	}
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return errors.New(msg)
		}
		return err
	}
	return nil
}

func localVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s version: %w", bin, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func readManifest(ctx context.Context, c *gossh.Client, r Release) (agent.Status, error) {
	var out bytes.Buffer
	var st agent.Status
	if err := runAgent(ctx, c, nil, &out, "manifest", r.App, r.Instance); err != nil {
		return st, err
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		return st, fmt.Errorf("reading its manifest: %w", err)
	}
	return st, nil
}

// installAgent uploads agentBin as the node's agent; the new file is
// renamed into place, never half-written.
func installAgent(ctx context.Context, c *gossh.Client, agentBin string) error {
	f, err := os.Open(agentBin)
	if err != nil {
		return err
	}
	defer f.Close()
	return runRemote(ctx, c, f, nil, "sh", "-c",
		`mkdir -p "$(dirname "$0")" && cat > "$0.new" && chmod 0755 "$0.new" && mv -f "$0.new" "$0"`, AgentPath)
}
