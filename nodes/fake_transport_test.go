package nodes

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/manifest"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// The scripted fake transport: every node of a fakeFleet answers like an
// agent keeping a little state per instance (the live release, the one
// before it, the releases present), unless a test scripted the answer of
// a node's next call of a verb (a failure, an unreachable node, a dropped
// connection, a delay, a block until released). Every call is recorded,
// per node, in order. It runs nothing: the two-phase deploy's tests run
// in milliseconds without root; the e2e fault suite proves the same on
// real nodes.

// step is a scripted answer to one call.
type step struct {
	code        int    // exit with this code, saying msg on stderr
	msg         string // with code
	warn        string // said on stderr by a command that succeeds
	unreachable bool   // the command never starts: the node cannot be reached
	// dropped: the connection drops before the answer arrives; with
	// after, once the agent did its work (an activate that switched).
	dropped bool
	after   bool
	hook    func()        // called once the command started (a test cancels its context)
	delay   time.Duration // answer this much later
	block   chan struct{} // answer once it is closed (or the context ends)
}

// fakeState is one instance on one node.
type fakeState struct {
	current, previous int
	present           map[int]bool
}

type fakeFleet struct {
	t       *testing.T
	fleet   *Fleet
	version string

	mu     sync.Mutex
	agents map[string]string     // node: its agent's version
	states map[string]*fakeState // node/instance
	steps  map[string][]step     // node verb: scripted answers, in turn
	calls  map[string][]string   // node: "verb args" of every call, in order
	down   map[string]bool       // node: cannot be reached at all
	local  map[string]bool       // node: its agent is not uploaded (LocalNode)
	specs  map[string]agent.Spec // node: the spec its last start got
	// aftermath: a prepare session that switched waits for it to close,
	// then warns "tidied", as the agent's workers switch and tidying
	// follow its answer.
	aftermath chan struct{}
	sessions  atomic.Int32 // prepare sessions running
	// live: the manifest every node answers for its live release.
	liveManifest manifest.Manifest
}

var errFakeDropped = errDropped

// newFakeFleet returns a fleet whose nodes (named names) are scripted,
// each with the current agent and, of app's instances production and
// staging, v4 live and v3 before it.
func newFakeFleet(t *testing.T, names ...string) (*fakeFleet, []Node) {
	t.Helper()
	const version = "v-test"
	bin := filepath.Join(t.TempDir(), "gitreceive")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho "+version+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ff := &fakeFleet{t: t, version: version, agents: map[string]string{}, states: map[string]*fakeState{},
		steps: map[string][]step{}, calls: map[string][]string{}, down: map[string]bool{}, local: map[string]bool{}}
	ff.fleet = &Fleet{AgentBin: bin, newTransport: func(n Node) transport { return &fakeTransport{ff: ff, node: n.Name} }}
	var nodes []Node
	for _, name := range names {
		nodes = append(nodes, Node{Name: name, User: "root", Host: name + ".test", Port: 22})
		ff.agents[name] = version
		for _, inst := range []string{"production", "staging"} {
			ff.setState(name, inst, 4, 3)
		}
	}
	return ff, nodes
}

// setState makes current (after previous) live on node, both present.
func (ff *fakeFleet) setState(node, instance string, current, previous int) {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	st := &fakeState{current: current, previous: previous, present: map[int]bool{}}
	for _, n := range []int{current, previous} {
		if n > 0 {
			st.present[n] = true
		}
	}
	ff.states[node+"/"+instance] = st
}

// script queues answers to node's next calls of verb.
func (ff *fakeFleet) script(node, verb string, steps ...step) {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	ff.steps[node+" "+verb] = append(ff.steps[node+" "+verb], steps...)
}

// callsTo is what node was asked, in order.
func (ff *fakeFleet) callsTo(node string) []string {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	return slices.Clone(ff.calls[node])
}

// live is the release node serves of instance.
func (ff *fakeFleet) live(node, instance string) int {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	return ff.states[node+"/"+instance].current
}

type fakeTransport struct {
	ff   *fakeFleet
	node string
}

func (t *fakeTransport) open(context.Context) error {
	t.ff.mu.Lock()
	defer t.ff.mu.Unlock()
	if t.ff.down[t.node] {
		return fmt.Errorf("cannot reach node %s at %s.test:22: connection refused", t.node, t.node)
	}
	return nil
}

func (t *fakeTransport) agentBin() string {
	if t.uploadsAgent() {
		return AgentPath
	}
	return t.ff.fleet.AgentBin
}

func (t *fakeTransport) uploadsAgent() bool {
	t.ff.mu.Lock()
	defer t.ff.mu.Unlock()
	return !t.ff.local[t.node]
}

func (t *fakeTransport) interactive(context.Context, io.Reader, io.Writer, io.Writer, *Terminal, []string) (int, error) {
	return -1, errors.New("the fake transport runs no scripts")
}

// fakeCall reads argv as a verb and its arguments: the agent's (after
// "node", without the app and instance), installAgent's "install", or
// the agent's "version".
func fakeCall(argv []string) (verb, instance string, args []string) {
	switch {
	case argv[0] == "sh":
		return "install", "", nil
	case len(argv) < 3 || argv[1] != "node":
		return strings.Join(argv[1:], " "), "", nil
	}
	verb, args = argv[2], argv[3:]
	if len(args) >= 2 {
		instance, args = args[1], args[2:]
	}
	return verb, instance, args
}

func (t *fakeTransport) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, argv []string) error {
	verb, instance, args := fakeCall(argv)
	if verb == "prepare" {
		return t.prepare(ctx, instance, args, stdin, stdout, stderr)
	}
	return t.step(ctx, verb, instance, args, stdin, stdout, stderr)
}

// prepare is the prepare verb as the agent runs it: its manifest, receive
// and start steps in one session, each noted and scripted as its own,
// then, on the word to switch, its activate step.
func (t *fakeTransport) prepare(ctx context.Context, instance string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	t.ff.sessions.Add(1)
	defer t.ff.sessions.Add(-1)
	if err := t.step(ctx, "manifest", instance, nil, nil, stdout, stderr); err != nil {
		return err
	}
	in := bufio.NewReader(stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return nil // no plan: nothing to do
	}
	var plan agentapi.PreparePlan
	if err := json.Unmarshal(line, &plan); err != nil {
		return &exitError{code: 1, msg: "prepare: the plan is not JSON"}
	}
	if !plan.Go {
		return nil
	}
	contents, err := readReleaseStream(in)
	if err != nil {
		return &exitError{code: 1, msg: "prepare: " + err.Error()}
	}
	if err := t.step(ctx, "receive", instance, args, bytes.NewReader(contents), stdout, stderr); err != nil {
		return err
	}
	var started bytes.Buffer
	if err := t.step(ctx, "start", instance, args, bytes.NewReader(plan.Spec), &started, stderr); err != nil {
		return err
	}
	writeFramed(stdout, started.String())
	fmt.Fprintln(stdout, agentapi.PrepareStarted)
	word, err := in.ReadString('\n')
	if err != nil {
		return nil // no switch
	}
	if word != agentapi.PrepareSwitch+"\n" {
		return &exitError{code: 2, msg: fmt.Sprintf("prepare: %q is not the word to switch", word)}
	}
	var warn bytes.Buffer
	if err := t.step(ctx, "activate", instance, args, nil, io.Discard, &warn); err != nil {
		fmt.Fprint(stderr, warn.String())
		return err
	}
	writeFramed(stdout, warn.String())
	fmt.Fprintln(stdout, agentapi.PrepareSwitched)
	_, _ = io.Copy(io.Discard, in) // the aftermath waits for the end of input
	if t.ff.aftermath != nil {
		<-t.ff.aftermath
		writeFramed(stdout, "tidied\n")
	}
	return nil
}

// readReleaseStream reads what a receive reads, the manifest line and
// a tar, which ends the contents, and returns it.
func readReleaseStream(in *bufio.Reader) ([]byte, error) {
	manifestLine, err := in.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("reading the manifest: %w", err)
	}
	read := bytes.NewBuffer(manifestLine)
	tr := tar.NewReader(io.TeeReader(in, read))
	for {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return read.Bytes(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the contents: %w", err)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return nil, fmt.Errorf("reading the contents: %w", err)
		}
	}
}

// writeFramed writes text's lines as the agent frames output in a
// prepare session.
func writeFramed(w io.Writer, text string) {
	for line := range strings.Lines(text) {
		fmt.Fprintf(w, "%s%s", agentapi.PrepareOutput, line)
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		fmt.Fprintln(w)
	}
}

// step is one verb of the fake agent, as scripted.
func (t *fakeTransport) step(ctx context.Context, verb, instance string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ff := t.ff
	ff.mu.Lock()
	ff.calls[t.node] = append(ff.calls[t.node], strings.Join(append([]string{verb}, args...), " "))
	var s step
	if queue := ff.steps[t.node+" "+verb]; len(queue) > 0 {
		s, ff.steps[t.node+" "+verb] = queue[0], queue[1:]
	}
	ff.mu.Unlock()
	if ctx.Err() != nil {
		return &notStartedError{ctx.Err()}
	}
	if s.unreachable {
		return &notStartedError{fmt.Errorf("cannot reach node %s: connection refused", t.node)}
	}
	if s.hook != nil {
		s.hook()
	}
	if err := s.wait(ctx); err != nil {
		return err
	}
	if s.code != 0 {
		fmt.Fprint(stderr, s.msg)
		return &exitError{code: s.code}
	}
	if s.dropped && !s.after {
		return errFakeDropped
	}
	err := ff.do(t.node, verb, instance, args, stdin, stdout)
	if err == nil {
		fmt.Fprint(stderr, s.warn)
	}
	if s.dropped {
		return errFakeDropped
	}
	if ee := (*exitError)(nil); errors.As(err, &ee) {
		fmt.Fprint(stderr, err.Error())
		return &exitError{code: ee.code}
	}
	return err
}

// wait is the step's delay or block, cut short by ctx.
func (s step) wait(ctx context.Context) error {
	var after <-chan time.Time
	if s.delay > 0 {
		after = time.After(s.delay)
	}
	if s.block == nil && after == nil {
		return nil
	}
	select {
	case <-s.block:
	case <-after:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// do is what the agent does: its answer on stdout, or an *exitError.
func (ff *fakeFleet) do(node, verb, instance string, args []string, stdin io.Reader, stdout io.Writer) error {
	if stdout == nil {
		stdout = io.Discard
	}
	var received int64
	var input bytes.Buffer
	if stdin != nil {
		received, _ = io.Copy(&input, stdin)
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if verb == "start" && input.Len() > 0 {
		var spec agent.Spec
		if err := json.Unmarshal(input.Bytes(), &spec); err != nil {
			return &exitError{code: 2, msg: "start: the spec is not JSON"}
		}
		if ff.specs == nil {
			ff.specs = map[string]agent.Spec{}
		}
		ff.specs[node] = spec
	}
	st := ff.states[node+"/"+instance]
	n := 0
	if len(args) > 0 {
		n, _ = strconv.Atoi(args[0])
	}
	switch verb {
	case "install":
		ff.agents[node] = ff.version
	case "version":
		fmt.Fprintln(stdout, ff.agents[node])
	case "manifest":
		return json.NewEncoder(stdout).Encode(agent.Status{Agent: ff.agents[node], Release: st.current, Manifest: ff.liveManifest})
	case "releases":
		var present []int
		for p := range st.present {
			present = append(present, p)
		}
		slices.Sort(present)
		return json.NewEncoder(stdout).Encode(agent.Releases{Current: st.current, Previous: st.previous, Present: present})
	case "receive":
		st.present[n] = true
		return json.NewEncoder(stdout).Encode(agent.Status{Release: n, Received: received})
	case "start":
		if !st.present[n] {
			return &exitError{code: 1, msg: fmt.Sprintf("v%d is not on this node", n)}
		}
		fmt.Fprintf(stdout, "v%d: health check passed\n", n)
	case "activate":
		if !st.present[n] {
			return &exitError{code: 1, msg: fmt.Sprintf("v%d is not on this node", n)}
		}
		if n != st.current {
			st.previous, st.current = st.current, n
		}
	case "deactivate":
		if st.current == n {
			st.current = 0
		}
	case "abort":
		if st.current == n {
			return &exitError{code: 1, msg: fmt.Sprintf("v%d is live", n)}
		}
		delete(st.present, n)
	case "setup":
		fmt.Fprintln(stdout, "setup done: 0 changes")
	default:
		ff.t.Errorf("node %s: the fake agent does not know %q", node, verb)
		return &exitError{code: 2}
	}
	return nil
}
