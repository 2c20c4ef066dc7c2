package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// An instance's singletons are what runs on one of its nodes only: its
// cron jobs and its workers of nodes = one (DESIGN.md decision 11). A
// deploy gives them to its first node (Spec.Singletons); the receiver
// moves them off a node that is gone or fails its check (node
// singletons-hold, receiver/apps/singletonswatch.go). Every node runs the
// live release's supervisor when the release has any worker or cron job,
// so that the hold can come to it at any time: the supervisor reads the
// hold every holdPoll, starts the nodes = one workers when it comes and
// stops them (SIGTERM, their stop timeout) when it goes; at each due time
// a cron job runs only where the hold is.

// holdPoll is how often a supervisor reads the singletons hold.
const holdPoll = time.Second

// singletonsHoldPath overrides Spec.Singletons ("on" or "off", root's): the
// receiver moved the singletons to or away from this node. A deploy
// removes it (start of a new spec), giving them back to the spec's choice.
func singletonsHoldPath(dir string) string { return filepath.Join(dir, "singletons-hold") }

// holdsSingletons says whether this node runs the instance's singletons,
// spec being the live release's.
func holdsSingletons(dir string, spec Spec) bool {
	data, err := os.ReadFile(singletonsHoldPath(dir))
	if err != nil {
		return spec.Singletons
	}
	return strings.TrimSpace(string(data)) == "on"
}

func singletonsHoldVerb(_ context.Context, c *call, r agentapi.SingletonsHold) error {
	in := c.instance(r.Target)
	if _, err := os.Stat(in.dir); err != nil {
		return fmt.Errorf("%s@%s is not on this node", in.app, in.name)
	}
	value := "off\n"
	if r.On {
		value = "on\n"
	}
	return atomicfile.Write(singletonsHoldPath(in.dir), []byte(value), 0o644)
}

// runsWorkers says whether a node runs any of the spec's workers, held
// saying whether it holds the singletons: one that runs only the cron
// scheduler has no worker to watch at a switch.
func (s Spec) runsWorkers(held bool) bool {
	for _, w := range s.BackgroundWorkers {
		if !w.OneNode || held {
			return true
		}
	}
	return false
}

// holdGate is a supervisor's view of the singletons hold: whether this
// node holds them, and a channel closed at the next change.
type holdGate struct {
	mu      sync.Mutex
	held    bool
	changed chan struct{}
}

func newHoldGate(held bool) *holdGate { return &holdGate{held: held, changed: make(chan struct{})} }

// get is the hold now and a channel closed when it changes.
func (g *holdGate) get() (bool, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.changed
}

// set records the hold, waking those waiting on a change if it is one.
func (g *holdGate) set(held bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if held == g.held {
		return
	}
	g.held = held
	close(g.changed)
	g.changed = make(chan struct{})
}

// watchHold reads the hold into s.hold every holdPoll until ctx ends.
func (s *supervisor) watchHold(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(holdPoll):
			s.hold.set(holdsSingletons(s.ri.dir(), s.spec))
		}
	}
}

// runSingleton runs a nodes = one worker's process (state slot) while this
// node holds the singletons: started when the hold comes, stopped like at
// a deploy (SIGTERM, its stop timeout) when it goes; meanwhile the slot
// says it runs elsewhere.
func (s *supervisor) runSingleton(ctx context.Context, w WorkerSpec, slot int, kick <-chan struct{}) {
	for ctx.Err() == nil {
		held, changed := s.hold.get()
		if !held {
			s.update(slot, func(p *processState) { p.PID, p.Elsewhere, p.CrashLoop = 0, true, false })
			select {
			case <-ctx.Done():
			case <-changed:
			case <-kick: // ps:restart of a worker another node runs
			}
			continue
		}
		s.update(slot, func(p *processState) { p.Elsewhere = false })
		whileHeld, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-changed:
			case <-whileHeld.Done():
			}
			cancel()
		}()
		s.runProcess(whileHeld, w, slot, kick)
		cancel()
	}
}
