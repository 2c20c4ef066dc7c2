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
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/manifest"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// cleanupTimeout bounds undoing a failed deploy (abort, switch back),
// which runs even when the deploy's context was cancelled.
const cleanupTimeout = 30 * time.Second

// Release is what a deploy sends to every node.
type Release struct {
	App      string
	Instance string
	Number   int
	Manifest manifest.Manifest
	Spec     agent.Spec // how it runs: started and health-checked in phase 1
	// UpdateFetchOn names the one node that runs the spec's update_fetch;
	// the others start without it. Its scripts (migrations) act on what
	// every node shares, a database: run on each node at once they race.
	// "" runs it everywhere.
	UpdateFetchOn string
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
	Full     bool  // the node's current release did not match its manifest: everything was sent
	Duration time.Duration

	// TookBack: the node was live on this deploy's release number, which
	// no deploy recorded (a switch whose end the receiver never heard), and
	// was switched back to release Back (0: none) before the upload.
	TookBack bool
	Back     int
}

// nodeDeploy is one node's part of a deploy.
type nodeDeploy struct {
	conn     *conn
	prev     int  // the release live before this deploy (0: none)
	switched bool // phase 2 pointed it at the new release, or may have
	lost     bool // it could not be reached: undoing does not try again
	// unsure: it may have switched, and undoing could not reach it.
	unsure bool
	// warnings: what its activate printed when it switched (tidying
	// older releases failed, ...).
	warnings string
	// session: the prepare session the release was made in, open until
	// the switch's aftermath ends (Settle) or the deploy is undone; nil
	// when the release was started in a session of its own, which an
	// activate switches.
	session *prepareSession
}

// Prepared is a release that every node has built and verified (phase 1
// done), not yet switched to.
type Prepared struct {
	release Release
	nodes   []Node
	deploys []nodeDeploy
	// existing: the release was already on the nodes (activate of an
	// older one); undoing keeps it there.
	existing bool
}

// Prepare is phase 1 of a deploy (DESIGN.md decision 6): it sends r to
// every node in parallel (bounded), and each builds and verifies vN beside
// its live release, starts it and health-checks it. say gets each line a
// node prints meanwhile (health check, update_fetch); ready is called as
// each node finishes. On a failure or cancellation vN is stopped and
// removed wherever it was made, the old release keeps serving, and the
// error names every node that failed.
func (f *Fleet) Prepare(ctx context.Context, nodes []Node, r Release, say func(Node, string), ready func(Report)) (*Prepared, error) {
	version, err := localVersion(ctx, f.AgentBin)
	if err != nil {
		return nil, err
	}
	p := &Prepared{release: r, nodes: nodes, deploys: make([]nodeDeploy, len(nodes))}
	err = f.phase1(ctx, p, ready, func(d *nodeDeploy) (Report, error) {
		return prepareOn(ctx, d, r, version, func(line string) { say(d.conn.node, line) })
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// phase1 runs prepareNode on every node of p (in parallel, bounded),
// with each node's connection in its nodeDeploy, where prepareNode records
// the node's previous release, and reports each outcome to ready. If any
// node failed, or ctx ended, it undoes p and returns an error naming
// every node that failed.
func (f *Fleet) phase1(ctx context.Context, p *Prepared, ready func(Report), prepareNode func(d *nodeDeploy) (Report, error)) error {
	defer func() {
		if v := recover(); v != nil {
			p.Settle(ctx) // no node's agent is left waiting for a word to switch
			panic(v)
		}
	}()
	reports := make([]Report, len(p.nodes))
	forEachNode(p.nodes, func(i int, n Node) {
		began := time.Now()
		c, err := f.connect(ctx, n)
		if err == nil {
			p.deploys[i].conn = c
			reports[i], err = prepareNode(&p.deploys[i])
			p.deploys[i].lost = notStarted(err)
		}
		reports[i].Node, reports[i].Err, reports[i].Duration = n, err, time.Since(began)
		ready(reports[i])
	})
	var failed []string
	for _, rep := range reports {
		if rep.Err != nil {
			failed = append(failed, rep.Err.Error())
		}
	}
	if len(failed) > 0 || ctx.Err() != nil {
		p.Undo(ctx)
		if len(failed) == 0 {
			return ctx.Err()
		}
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// Switch is phase 2: it points every node of every prepared release at
// it, all nodes in parallel. It runs to its end even if ctx is cancelled
// meanwhile, so that it ends with everything switched or nothing: on any
// failure, or if ctx was cancelled (the pusher left, so git will not move
// the branch), every switched node goes back and the error says why.
func (f *Fleet) Switch(ctx context.Context, ps ...*Prepared) error {
	// cleanupTimeout for each round of maxParallel nodes switched at once:
	// a hundred nodes are seven rounds.
	rounds := 1
	for _, p := range ps {
		rounds = max(rounds, (len(p.nodes)+maxParallel-1)/maxParallel)
	}
	switchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(rounds)*cleanupTimeout+workersSwitchTime(ps))
	defer cancel()
	var errs []error
	for _, p := range ps {
		r := p.release
		pErrs := make([]error, len(p.nodes))
		forEachNode(p.nodes, func(i int, n Node) {
			d := &p.deploys[i]
			var err error
			answered := false
			if d.session != nil {
				answered, err = d.session.switchNow(switchCtx)
			} else {
				d.warnings, err = d.conn.agentWarnings(switchCtx, agentapi.Activate{Release: agentapi.At(r.App, r.Instance).Release(r.Number)}.Argv()...)
				answered = err == nil
			}
			// A switch that started and never answered (the connection
			// died) may have switched the node: undoing treats it as
			// switched.
			d.switched = answered || exitCode(err) == -1 && !notStarted(err)
			d.lost = notStarted(err)
			if err != nil {
				pErrs[i] = fmt.Errorf("node %s: switching %s to v%d: %w", n.Name, r.Instance, r.Number, err)
			}
		})
		errs = append(errs, pErrs...)
	}
	err := errors.Join(errs...)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		for _, p := range ps {
			p.Undo(ctx)
		}
	}
	return err
}

// workersSwitchTime is the time an activate may take beyond routing: the
// old release's workers get their stop timeout (the default when the
// spec is not at hand: an activate of a kept release), the new ones are
// watched for 10 s.
func workersSwitchTime(ps []*Prepared) time.Duration {
	stop := agent.DefaultWorkerStopTimeout
	for _, p := range ps {
		for _, w := range p.release.Spec.BackgroundWorkers {
			stop = max(stop, w.StopTimeout)
		}
	}
	return time.Duration(stop+15) * time.Second
}

// Undo points every switched node (and every node whose activate never
// answered) back at its previous release (or at none) and removes vN
// wherever it was received. It is best effort, and does not ask again a
// node that could not be reached: such a node keeps a vN that is not live,
// which the next receive of that number replaces, or, if it switched
// before it was lost, serves vN until it is switched back: by the caller
// once it answers again (Unsure, TakeBackUnrecorded), else by the next
// deploy (upload's takeBack).
func (p *Prepared) Undo(ctx context.Context) {
	p.Settle(ctx)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	r := p.release
	var reached []*nodeDeploy
	var nodes []Node
	for i := range p.deploys {
		if d := &p.deploys[i]; d.conn != nil && !d.lost {
			reached = append(reached, d)
			nodes = append(nodes, d.conn.node)
		}
	}
	forEachNode(nodes, func(i int, _ Node) {
		d := reached[i]
		if d.switched {
			var err error
			if d.prev > 0 {
				err = d.conn.agent(ctx, nil, nil, agentapi.Activate{Release: agentapi.At(r.App, r.Instance).Release(d.prev)}.Argv()...)
			} else {
				err = d.conn.agent(ctx, nil, nil, agentapi.Deactivate{Release: agentapi.At(r.App, r.Instance).Release(r.Number)}.Argv()...)
			}
			d.switched = false
			if err != nil {
				// Unreachable (asking again now only waits for another dial
				// timeout) or refusing (its previous release would not
				// start): it may still serve vN. The caller takes vN back
				// once the node answers again (Unsure); vN stays there.
				d.unsure = true
				return
			}
		}
		if !p.existing {
			_ = d.conn.agent(ctx, nil, nil, agentapi.Abort{Release: agentapi.At(r.App, r.Instance).Release(r.Number)}.Argv()...)
		}
	})
}

// Settle ends every prepare session left open, and waits, bounded, for
// what a node that switched does then (the old release's workers stopped
// and the new ones watched, older releases tidied): the agents wait for
// it until every node has switched, so that no node's aftermath slows
// another's switch. Warnings then holds what the nodes warned of. Undo
// settles first: the agents act on the instance until then.
func (p *Prepared) Settle(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), workersSwitchTime([]*Prepared{p})+cleanupTimeout)
	defer cancel()
	var open []*nodeDeploy
	var nodes []Node
	for i := range p.deploys {
		if d := &p.deploys[i]; d.session != nil {
			open = append(open, d)
			nodes = append(nodes, d.conn.node)
		}
	}
	forEachNode(nodes, func(i int, _ Node) {
		d := open[i]
		stop := context.AfterFunc(ctx, d.session.kill)
		err := d.session.end()
		stop()
		lines := d.session.lines
		if err != nil && d.switched {
			lines = append(lines, fmt.Sprintf("warning: v%d is live, but what follows its switch (workers, tidying) did not end well: %v", p.release.Number, err))
		}
		d.warnings = strings.Join(lines, "\n")
		d.session = nil
	})
}

// Warnings are the lines the nodes' switches warned of, each after its
// node's name (after Settle).
func (p *Prepared) Warnings() []string {
	var lines []string
	for _, d := range p.deploys {
		if d.warnings == "" || d.conn == nil {
			continue
		}
		for _, line := range strings.Split(d.warnings, "\n") {
			lines = append(lines, fmt.Sprintf("%-8s %s", d.conn.node.Name, line))
		}
	}
	return lines
}

// Unsure lists the nodes that may be live on the release after Undo: they
// may have switched, and could not be reached to switch back.
func (p *Prepared) Unsure() []Node {
	var nodes []Node
	for _, d := range p.deploys {
		if d.unsure {
			nodes = append(nodes, d.conn.node)
		}
	}
	return nodes
}

// takeBack switches a node that is live on rel.Current, which no deploy
// recorded, back to the release before it (started again from its kept
// spec, health-checked, then routed), or to none when there is none, and
// removes rel.Current so that it can be built afresh. It returns the
// release the node serves now.
func takeBack(ctx context.Context, c *conn, app, instance string, rel agent.Releases) (int, error) {
	back := rel.Previous
	if back > 0 && back < rel.Current {
		if err := c.agent(ctx, nil, nil, agentapi.Start{Release: agentapi.At(app, instance).Release(back), Stored: true}.Argv()...); err != nil {
			return 0, err
		}
		if err := c.agent(ctx, nil, nil, agentapi.Activate{Release: agentapi.At(app, instance).Release(back)}.Argv()...); err != nil {
			return 0, err
		}
	} else {
		back = 0
		if err := c.agent(ctx, nil, nil, agentapi.Deactivate{Release: agentapi.At(app, instance).Release(rel.Current)}.Argv()...); err != nil {
			return 0, err
		}
	}
	return back, c.agent(ctx, nil, nil, agentapi.Abort{Release: agentapi.At(app, instance).Release(rel.Current)}.Argv()...)
}

// specFor is the spec node starts r with: update_fetch, the cron jobs
// and worker.NAME.nodes = one run on one node only (UpdateFetchOn).
func (r Release) specFor(node string) agent.Spec {
	s := r.Spec
	one := r.UpdateFetchOn == "" || r.UpdateFetchOn == node
	if !one {
		s.UpdateFetch = nil
	}
	s.Singletons = one
	return s
}

// start has the node start release r and health-check it, sending the
// spec (stored: the node uses the spec it kept when it received r). Each
// line the agent prints goes to say.
func start(ctx context.Context, c *conn, r Release, stored bool, say func(string)) error {
	args := agentapi.Start{Release: agentapi.At(r.App, r.Instance).Release(r.Number), Stored: stored}.Argv()
	var stdin io.Reader
	if !stored {
		spec, err := json.Marshal(r.specFor(c.node.Name))
		if err != nil {
			return err
		}
		stdin = bytes.NewReader(spec)
	}
	lines := &lineWriter{line: say}
	err := c.agent(ctx, stdin, lines, args...)
	lines.Flush()
	if err != nil {
		return fmt.Errorf("node %s: %w", c.node.Name, err)
	}
	return nil
}

// receive streams the manifest and the needed contents to the agent.
func receive(ctx context.Context, c *conn, r Release, need []string, full bool) (agent.Status, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	wait := writeRelease(ctx, c.node.Name, r, need, nil, pw, false)
	args := agentapi.Receive{Release: agentapi.At(r.App, r.Instance).Release(r.Number), Full: full}.Argv()
	var out bytes.Buffer
	err := c.agent(ctx, pr, &out, args...)
	pr.CloseWithError(io.ErrClosedPipe)
	cancel()
	wait()
	var st agent.Status
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		return st, fmt.Errorf("reading its answer: %w", err)
	}
	return st, nil
}

func localVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s version: %w", bin, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// installAgent uploads this binary as the node's agent; the new file is
// renamed into place, never half-written.
func installAgent(ctx context.Context, c *conn) error {
	f, err := os.Open(c.fleet.AgentBin)
	if err != nil {
		return err
	}
	defer f.Close()
	return c.run(ctx, f, nil, nil, "sh", "-c",
		`mkdir -p "$(dirname "$0")" && cat > "$0.new" && chmod 0755 "$0.new" && mv -f "$0.new" "$0"`, AgentPath)
}

// TakeBackUnrecorded switches back every node live on a release newer
// than recorded, the instance's last release the receiver recorded: a
// deploy interrupted mid-switch (the receiver killed, a node lost) left it
// there. Each such node goes back to the release before it, started again
// from its kept spec, or to none. It returns the nodes it switched back
// and what failed, by node.
func (f *Fleet) TakeBackUnrecorded(ctx context.Context, nodes []Node, app, instance string, recorded int) ([]Node, error) {
	took := make([]bool, len(nodes))
	errs := make([]error, len(nodes))
	forEachNode(nodes, func(i int, n Node) {
		c, err := f.connect(ctx, n)
		if err == nil {
			var cur InstanceReleases
			if cur, err = releasesOn(ctx, c, app, instance); err == nil && cur.Current > recorded {
				_, err = takeBack(ctx, c, app, instance, cur.Releases)
				took[i] = err == nil
			}
		}
		if err != nil {
			errs[i] = fmt.Errorf("node %s: %w", n.Name, err)
		}
	})
	var back []Node
	for i, n := range nodes {
		if took[i] {
			back = append(back, n)
		}
	}
	return back, errors.Join(errs...)
}
