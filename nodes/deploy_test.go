package nodes

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/manifest"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

// The two-phase deploy (Prepare, Switch, Undo, TakeBackUnrecorded) at
// every fault step, on scripted nodes (fake_transport_test.go).

func testRelease(instance string) Release {
	return Release{App: "app", Instance: instance, Number: 5, Spec: agent.Spec{},
		WriteContents: func(_ context.Context, _ []string, w io.Writer) error { return tar.NewWriter(w).Close() }}
}

// deployRecord is what a deploy told its caller.
type deployRecord struct {
	mu      sync.Mutex
	said    []string
	reports map[string]Report
}

func (d *deployRecord) say(n Node, line string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.said = append(d.said, n.Name+" "+line)
}

func (d *deployRecord) ready(r Report) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reports == nil {
		d.reports = map[string]Report{}
	}
	d.reports[r.Node.Name] = r
}

func prepare(ctx context.Context, ff *fakeFleet, nodes []Node, instance string) (*Prepared, *deployRecord, error) {
	rec := &deployRecord{}
	p, err := ff.fleet.Prepare(ctx, nodes, testRelease(instance), rec.say, rec.ready)
	return p, rec, err
}

// wantCalls checks what every node was asked, in order.
func wantCalls(t *testing.T, ff *fakeFleet, want map[string][]string) {
	t.Helper()
	for node, calls := range want {
		if got := ff.callsTo(node); !slices.Equal(got, calls) {
			t.Errorf("node %s was asked %q, want %q", node, got, calls)
		}
	}
}

// wantLive checks the release each node serves of production.
func wantLive(t *testing.T, ff *fakeFleet, want map[string]int) {
	t.Helper()
	for node, n := range want {
		if got := ff.live(node, "production"); got != n {
			t.Errorf("node %s serves v%d, want v%d", node, got, n)
		}
	}
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", parts)
	}
	for _, part := range parts {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
}

var (
	phase1      = []string{"manifest", "receive 5", "start 5"}
	phase1Abort = []string{"manifest", "receive 5", "start 5", "abort 5"}
	switched    = []string{"manifest", "receive 5", "start 5", "activate 5"}
	undone      = []string{"manifest", "receive 5", "start 5", "activate 5", "activate 4", "abort 5"}
)

func TestDeploySwitchesEveryNode(t *testing.T) {
	ff, nodes := newFakeFleet(t, "a", "b", "c")
	p, rec, err := prepare(context.Background(), ff, nodes, "production")
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ff, map[string][]string{"a": phase1, "b": phase1, "c": phase1})
	wantLive(t, ff, map[string]int{"a": 4, "b": 4, "c": 4})
	ff.script("b", "activate", step{warn: "removing v1: permission denied\n"})
	if err := ff.fleet.Switch(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	p.Settle(context.Background())
	if got, want := p.Warnings(), []string{"b        removing v1: permission denied"}; !slices.Equal(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
	wantCalls(t, ff, map[string][]string{"a": switched, "b": switched, "c": switched})
	wantLive(t, ff, map[string]int{"a": 5, "b": 5, "c": 5})
	slices.Sort(rec.said)
	if want := []string{"a v5: health check passed", "b v5: health check passed", "c v5: health check passed"}; !slices.Equal(rec.said, want) {
		t.Errorf("said %q, want %q", rec.said, want)
	}
	if len(rec.reports) != 3 {
		t.Errorf("ready was told of %d nodes, want 3", len(rec.reports))
	}
	for name, r := range rec.reports {
		if r.Err != nil || r.TookBack || r.Full {
			t.Errorf("node %s: report %+v", name, r)
		}
	}
	if u := p.Unsure(); len(u) != 0 {
		t.Errorf("unsure nodes %v after a deploy that succeeded", u)
	}
}

// A node's first answer holds its live release's whole manifest, one
// line much longer than a line of output (a real app's 5,000 files).
func TestPrepareReadsALargeManifest(t *testing.T) {
	ff, nodes := newFakeFleet(t, "a")
	for i := range 5000 {
		ff.liveManifest = append(ff.liveManifest, manifest.Entry{Path: fmt.Sprintf("lib/python/pkg/module%04d.py", i), Mode: manifest.ModeFile,
			Size: 10, SHA256: strings.Repeat("a", 64)})
	}
	p, _, err := prepare(context.Background(), ff, nodes, "production")
	if err != nil {
		t.Fatal(err)
	}
	if err := ff.fleet.Switch(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	p.Settle(context.Background())
	wantLive(t, ff, map[string]int{"a": 5})
}

// Switch returns once every node answered that it routes to the release,
// without waiting for what follows on the nodes (the workers switch,
// tidying); Settle waits for that and collects its warnings.
func TestSwitchAnswersBeforeTheAftermath(t *testing.T) {
	ff, nodes := newFakeFleet(t, "a", "b")
	ff.aftermath = make(chan struct{})
	p, _, err := prepare(context.Background(), ff, nodes, "production")
	if err != nil {
		t.Fatal(err)
	}
	switched := make(chan error, 1)
	go func() { switched <- ff.fleet.Switch(context.Background(), p) }()
	select {
	case err := <-switched:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(ff.aftermath)
		t.Fatal("Switch waited for the nodes' aftermath")
	}
	wantLive(t, ff, map[string]int{"a": 5, "b": 5})
	settled := make(chan struct{})
	go func() { p.Settle(context.Background()); close(settled) }()
	select {
	case <-settled:
		t.Fatal("Settle returned before the nodes' aftermath ended")
	case <-time.After(50 * time.Millisecond):
	}
	close(ff.aftermath)
	<-settled
	if got, want := p.Warnings(), []string{"a        tidied", "b        tidied"}; !slices.Equal(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
}

// A node failing phase 1 fails the deploy before any node switched: vN is
// removed wherever it was made, except from a node that could not be
// reached, and the error names every node that failed.
func TestPrepareFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		script  func(ff *fakeFleet)
		wantErr []string
		want    map[string][]string
	}{{
		name:    "start fails on b",
		script:  func(ff *fakeFleet) { ff.script("b", "start", step{code: 1, msg: "health check failed: 502"}) },
		wantErr: []string{"node b: health check failed: 502"},
		want:    map[string][]string{"a": phase1Abort, "b": phase1Abort, "c": phase1Abort},
	}, {
		name: "start fails on a and c",
		script: func(ff *fakeFleet) {
			ff.script("a", "start", step{code: 1, msg: "a is broken"})
			ff.script("c", "start", step{code: 1, msg: "c is broken"})
		},
		wantErr: []string{"node a: a is broken", "node c: c is broken"},
		want:    map[string][]string{"a": phase1Abort, "b": phase1Abort, "c": phase1Abort},
	}, {
		name:    "b cannot be reached",
		script:  func(ff *fakeFleet) { ff.down["b"] = true },
		wantErr: []string{"cannot reach node b"},
		want:    map[string][]string{"a": phase1Abort, "b": nil, "c": phase1Abort},
	}, {
		name:    "b lost during receive",
		script:  func(ff *fakeFleet) { ff.script("b", "receive", step{unreachable: true}) },
		wantErr: []string{"node b: cannot reach node b"},
		want:    map[string][]string{"a": phase1Abort, "b": {"manifest", "receive 5"}, "c": phase1Abort},
	}, {
		name:    "connection to b dropped during start",
		script:  func(ff *fakeFleet) { ff.script("b", "start", step{dropped: true}) },
		wantErr: []string{"node b: " + errFakeDropped.Error()},
		want:    map[string][]string{"a": phase1Abort, "b": phase1Abort, "c": phase1Abort},
	}, {
		name:    "receive fails on c",
		script:  func(ff *fakeFleet) { ff.script("c", "receive", step{code: 1, msg: "no space left on device"}) },
		wantErr: []string{"node c: no space left on device"},
		want:    map[string][]string{"a": phase1Abort, "b": phase1Abort, "c": {"manifest", "receive 5", "abort 5"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ff, nodes := newFakeFleet(t, "a", "b", "c")
			tc.script(ff)
			rec := &deployRecord{}
			p, err := ff.fleet.Prepare(context.Background(), nodes, testRelease("production"), rec.say, rec.ready)
			if p != nil {
				t.Error("Prepare returned a release after failing")
			}
			wantErr(t, err, tc.wantErr...)
			wantCalls(t, ff, tc.want)
			wantLive(t, ff, map[string]int{"a": 4, "b": 4, "c": 4})
			if len(rec.reports) != 3 {
				t.Errorf("ready was told of %d nodes, want 3", len(rec.reports))
			}
		})
	}
}

// A node failing phase 2 fails the deploy with every node back on the
// release before (all or nothing); a node that could not be reached to go
// back is reported unsure.
func TestSwitchFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		first   bool // the instance's first deploy: nothing live before
		script  func(ff *fakeFleet)
		wantErr []string
		want    map[string][]string
		live    map[string]int
		unsure  []string
	}{{
		name: "activate fails on c",
		script: func(ff *fakeFleet) {
			ff.script("c", "activate", step{code: 1, msg: "nginx: configuration test failed"})
		},
		wantErr: []string{"node c: switching production to v5: nginx: configuration test failed"},
		want:    map[string][]string{"a": undone, "b": undone, "c": {"manifest", "receive 5", "start 5", "activate 5", "abort 5"}},
		live:    map[string]int{"a": 4, "b": 4, "c": 4},
	}, {
		name:   "first deploy: activate fails on c",
		first:  true,
		script: func(ff *fakeFleet) { ff.script("c", "activate", step{code: 1, msg: "refused"}) },
		want: map[string][]string{
			"a": {"manifest", "receive 5", "start 5", "activate 5", "deactivate 5", "abort 5"},
			"c": {"manifest", "receive 5", "start 5", "activate 5", "abort 5"},
		},
		wantErr: []string{"node c: switching production to v5: refused"},
		live:    map[string]int{"a": 0, "b": 0, "c": 0},
	}, {
		name:    "c switched, and its answer was lost",
		script:  func(ff *fakeFleet) { ff.script("c", "activate", step{dropped: true, after: true}) },
		wantErr: []string{"node c: switching production to v5: " + errFakeDropped.Error()},
		want:    map[string][]string{"a": undone, "b": undone, "c": undone},
		live:    map[string]int{"a": 4, "b": 4, "c": 4},
	}, {
		name:    "c cannot be reached to switch",
		script:  func(ff *fakeFleet) { ff.script("c", "activate", step{unreachable: true}) },
		wantErr: []string{"node c: switching production to v5: cannot reach node c"},
		want:    map[string][]string{"a": undone, "b": undone, "c": switched},
		live:    map[string]int{"a": 4, "b": 4, "c": 4},
	}, {
		name: "b refuses to go back",
		script: func(ff *fakeFleet) {
			ff.script("c", "activate", step{code: 1, msg: "refused"})
			ff.script("b", "activate", step{}, step{code: 1, msg: "v4 does not start"})
		},
		wantErr: []string{"node c: switching production to v5: refused"},
		// b refused: it still serves v5, so it is unsure (taken back once
		// it can be) and v5 stays on it.
		want:   map[string][]string{"a": undone, "b": {"manifest", "receive 5", "start 5", "activate 5", "activate 4"}, "c": {"manifest", "receive 5", "start 5", "activate 5", "abort 5"}},
		live:   map[string]int{"a": 4, "b": 5, "c": 4},
		unsure: []string{"b"},
	}, {
		name: "b cannot be reached to go back",
		script: func(ff *fakeFleet) {
			ff.script("c", "activate", step{code: 1, msg: "refused"})
			ff.script("b", "activate", step{}, step{unreachable: true})
		},
		wantErr: []string{"node c: switching production to v5: refused"},
		want:    map[string][]string{"a": undone, "b": {"manifest", "receive 5", "start 5", "activate 5", "activate 4"}},
		live:    map[string]int{"a": 4, "b": 5, "c": 4},
		unsure:  []string{"b"},
	}, {
		name: "connection to b drops while it goes back",
		script: func(ff *fakeFleet) {
			ff.script("a", "activate", step{code: 1, msg: "refused"})
			ff.script("b", "activate", step{}, step{dropped: true})
		},
		wantErr: []string{"node a: switching production to v5: refused"},
		want:    map[string][]string{"b": {"manifest", "receive 5", "start 5", "activate 5", "activate 4"}, "c": undone},
		live:    map[string]int{"a": 4, "b": 5, "c": 4},
		unsure:  []string{"b"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ff, nodes := newFakeFleet(t, "a", "b", "c")
			if tc.first {
				for _, n := range nodes {
					ff.setState(n.Name, "production", 0, 0)
				}
			}
			p, _, err := prepare(context.Background(), ff, nodes, "production")
			if err != nil {
				t.Fatal(err)
			}
			tc.script(ff)
			wantErr(t, ff.fleet.Switch(context.Background(), p), tc.wantErr...)
			wantCalls(t, ff, tc.want)
			wantLive(t, ff, tc.live)
			var unsure []string
			for _, n := range p.Unsure() {
				unsure = append(unsure, n.Name)
			}
			if !slices.Equal(unsure, tc.unsure) {
				t.Errorf("unsure nodes %q, want %q", unsure, tc.unsure)
			}
		})
	}
}

// Switching several prepared releases is all or nothing too: one node
// failing one instance's switch takes every instance back.
func TestSwitchIsAllOrNothing(t *testing.T) {
	ff, nodes := newFakeFleet(t, "a", "b")
	prod, _, err := prepare(context.Background(), ff, nodes, "production")
	if err != nil {
		t.Fatal(err)
	}
	staging, _, err := prepare(context.Background(), ff, nodes, "staging")
	if err != nil {
		t.Fatal(err)
	}
	// b's calls: production's activate 5, then staging's.
	ff.script("b", "activate", step{}, step{code: 1, msg: "refused"})
	wantErr(t, ff.fleet.Switch(context.Background(), prod, staging), "node b: switching staging to v5: refused")
	for _, n := range nodes {
		for _, inst := range []string{"production", "staging"} {
			if got := ff.live(n.Name, inst); got != 4 {
				t.Errorf("node %s serves v%d of %s, want v4", n.Name, got, inst)
			}
		}
	}
}

// The pusher leaving (ctx cancelled) at any phase leaves every node on the
// release before: no switch in phase 1, every switch undone in phase 2.
func TestPusherGone(t *testing.T) {
	t.Run("during phase 1", func(t *testing.T) {
		ff, nodes := newFakeFleet(t, "a", "b", "c")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ff.script("b", "start", step{hook: cancel, block: make(chan struct{})})
		p, _, err := prepare(ctx, ff, nodes, "production")
		if p != nil {
			t.Error("Prepare returned a release after its context ended")
		}
		wantErr(t, err, "node b: context canceled")
		wantLive(t, ff, map[string]int{"a": 4, "b": 4, "c": 4})
		for _, n := range nodes {
			if calls := ff.callsTo(n.Name); slices.Contains(calls, "activate 5") {
				t.Errorf("node %s switched: %q", n.Name, calls)
			}
		}
		// b answered the cancellation (it was not lost): v5 goes.
		wantCalls(t, ff, map[string][]string{"b": phase1Abort})
	})
	t.Run("between the phases", func(t *testing.T) {
		ff, nodes := newFakeFleet(t, "a", "b", "c")
		ctx, cancel := context.WithCancel(context.Background())
		p, _, err := prepare(ctx, ff, nodes, "production")
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		err = ff.fleet.Switch(ctx, p)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Switch: %v, want the context's end", err)
		}
		wantCalls(t, ff, map[string][]string{"a": undone, "b": undone, "c": undone})
		wantLive(t, ff, map[string]int{"a": 4, "b": 4, "c": 4})
	})
	t.Run("during the switch", func(t *testing.T) {
		ff, nodes := newFakeFleet(t, "a", "b", "c")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p, _, err := prepare(ctx, ff, nodes, "production")
		if err != nil {
			t.Fatal(err)
		}
		ff.script("b", "activate", step{hook: cancel})
		err = ff.fleet.Switch(ctx, p)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Switch: %v, want the context's end", err)
		}
		wantCalls(t, ff, map[string][]string{"a": undone, "b": undone, "c": undone})
		wantLive(t, ff, map[string]int{"a": 4, "b": 4, "c": 4})
	})
}

// A node that could not be reached to go back (unsure) is taken back by
// TakeBackUnrecorded once it answers; nodes on the recorded release are
// left alone, and one that still cannot be reached is named.
func TestTakeBackUnrecorded(t *testing.T) {
	ff, nodes := newFakeFleet(t, "a", "b", "c")
	p, _, err := prepare(context.Background(), ff, nodes, "production")
	if err != nil {
		t.Fatal(err)
	}
	ff.script("c", "activate", step{code: 1, msg: "refused"})
	ff.script("b", "activate", step{}, step{unreachable: true})
	wantErr(t, ff.fleet.Switch(context.Background(), p), "node c")
	if u := p.Unsure(); len(u) != 1 || u[0].Name != "b" {
		t.Fatalf("unsure %v, want b", u)
	}
	wantLive(t, ff, map[string]int{"b": 5})

	before := map[string]int{}
	for _, n := range nodes {
		before[n.Name] = len(ff.callsTo(n.Name))
	}
	ff.down["c"] = true
	back, err := ff.fleet.TakeBackUnrecorded(context.Background(), nodes, "app", "production", 4)
	wantErr(t, err, "node c: cannot reach node c")
	if len(back) != 1 || back[0].Name != "b" {
		t.Errorf("took back %v, want b", back)
	}
	wantLive(t, ff, map[string]int{"a": 4, "b": 4})
	if got := ff.callsTo("b")[before["b"]:]; !slices.Equal(got, []string{"releases", "start 4 --stored", "activate 4", "abort 5"}) {
		t.Errorf("taking b back asked %q", got)
	}
	if got := ff.callsTo("a")[before["a"]:]; !slices.Equal(got, []string{"releases"}) {
		t.Errorf("a, on the recorded release, was asked %q", got)
	}

	// Nothing before the unrecorded release: the node serves none.
	ff.setState("a", "production", 5, 0)
	back, err = ff.fleet.TakeBackUnrecorded(context.Background(), nodes[:1], "app", "production", 0)
	if err != nil || len(back) != 1 {
		t.Fatalf("took back %v: %v", back, err)
	}
	if got := ff.callsTo("a")[before["a"]+1:]; !slices.Equal(got, []string{"releases", "deactivate 5", "abort 5"}) {
		t.Errorf("taking a back to none asked %q", got)
	}
	wantLive(t, ff, map[string]int{"a": 0})
}

// Phase 1 on one node: the agent is installed when it is missing or of
// another version (never on the receiver host, whose agent is this
// binary, nor on a node that could not be reached); a node live on the
// deploy's own release (an interrupted deploy) is taken back first; a
// damaged live release gets everything sent.
func TestPrepareNode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		script  func(ff *fakeFleet)
		want    []string
		wantErr string
		report  func(Report) bool
	}{{
		name:   "agent of another version",
		script: func(ff *fakeFleet) { ff.agents["a"] = "v-old" },
		want:   []string{"manifest", "install", "manifest", "receive 5", "start 5"},
	}, {
		name:   "no agent",
		script: func(ff *fakeFleet) { ff.script("a", "manifest", step{code: 127, msg: "sh: 1: not found"}) },
		want:   []string{"manifest", "install", "manifest", "receive 5", "start 5"},
	}, {
		name: "the receiver host's own agent",
		script: func(ff *fakeFleet) {
			ff.local["a"] = true
			ff.agents["a"] = "v-old"
		},
		want: phase1,
	}, {
		name:    "unreachable: not dialed again to install",
		script:  func(ff *fakeFleet) { ff.script("a", "manifest", step{unreachable: true}) },
		want:    []string{"manifest"},
		wantErr: "node a: cannot reach node a",
	}, {
		name: "installing the agent fails",
		script: func(ff *fakeFleet) {
			ff.agents["a"] = "v-old"
			ff.script("a", "install", step{code: 1, msg: "read-only file system"})
		},
		want:    []string{"manifest", "install", "abort 5"},
		wantErr: "node a: installing the agent: read-only file system",
	}, {
		name:   "live on the deploy's release, left by an interrupted deploy",
		script: func(ff *fakeFleet) { ff.setState("a", "production", 5, 4) },
		want:   []string{"manifest", "releases", "start 4 --stored", "activate 4", "abort 5", "manifest", "receive 5", "start 5"},
		report: func(r Report) bool { return r.TookBack && r.Back == 4 },
	}, {
		name:   "live release damaged",
		script: func(ff *fakeFleet) { ff.script("a", "receive", step{code: agent.ExitPreviousDamaged}) },
		want:   []string{"manifest", "receive 5", "receive 5 --full", "start 5"},
		report: func(r Report) bool { return r.Full },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ff, nodes := newFakeFleet(t, "a")
			tc.script(ff)
			_, rec, err := prepare(context.Background(), ff, nodes, "production")
			if tc.wantErr != "" {
				wantErr(t, err, tc.wantErr)
			} else if err != nil {
				t.Fatal(err)
			}
			wantCalls(t, ff, map[string][]string{"a": tc.want})
			if tc.report != nil && !tc.report(rec.reports["a"]) {
				t.Errorf("report %+v", rec.reports["a"])
			}
		})
	}
}

// A rollback (Activate) starts the kept release from its stored spec and
// switches to it; undoing it never removes that release: it was there
// before.
func TestActivateFails(t *testing.T) {
	ff, nodes := newFakeFleet(t, "a", "b")
	ff.script("b", "activate", step{code: 1, msg: "refused"})
	rec := &deployRecord{}
	_, err := ff.fleet.Activate(context.Background(), nodes, "app", "production", 3, rec.say, rec.ready)
	wantErr(t, err, "node b: switching production to v3: refused")
	wantCalls(t, ff, map[string][]string{
		"a": {"releases", "start 3 --stored", "activate 3", "activate 4"},
		"b": {"releases", "start 3 --stored", "activate 3"},
	})
	wantLive(t, ff, map[string]int{"a": 4, "b": 4})

	warnings, err := ff.fleet.Activate(context.Background(), nodes, "app", "production", 3, rec.say, rec.ready)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("Activate: %v %q", err, warnings)
	}
	wantLive(t, ff, map[string]int{"a": 3, "b": 3})
}

// update_fetch (migrations on the instance's shared database) runs on the
// one node the release names, and so do the cron jobs and the workers
// that run on one node (Singletons); the others start without them.
func TestUpdateFetchRunsOnOneNode(t *testing.T) {
	ff, nodes := newFakeFleet(t, "a", "b", "c")
	r := testRelease("production")
	r.Spec.UpdateFetch = []agent.FetchStep{{Script: "bin/manage.py", Args: []string{"migrate"}}}
	r.UpdateFetchOn = "b"
	rec := &deployRecord{}
	if _, err := ff.fleet.Prepare(context.Background(), nodes, r, rec.say, rec.ready); err != nil {
		t.Fatal(err)
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	for _, n := range []string{"a", "b", "c"} {
		if got, want := len(ff.specs[n].UpdateFetch), map[bool]int{true: 1}[n == "b"]; got != want {
			t.Errorf("node %s started with %d update_fetch steps, want %d", n, got, want)
		}
		if got, want := ff.specs[n].Singletons, n == "b"; got != want {
			t.Errorf("node %s started with Singletons %v, want %v", n, got, want)
		}
	}
}
