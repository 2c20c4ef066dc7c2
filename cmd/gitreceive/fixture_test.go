//go:build e2e || bench

package main_test

// What the e2e tests and the benchmarks (`make bench`, tag bench) share: the
// built binary, a running receiver with its keys, test-bed nodes set up as a
// fleet, HTTP against a node. The e2e tests need tag e2e (`make test`); see
// docs/ARCHITECTURE.md, Tests.

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

var bin string

func TestMain(m *testing.M) { os.Exit(receivertest.RunWithBinary(m, &bin)) }

// fixture is a running server with an admin (alice) and a deployer (bob,
// granted only "myapp").
type fixture struct {
	srv          *receivertest.Process
	alice, bob   *receivertest.Client
	keysDir      string
	aliceKey     receivertest.Key
	bobKey       receivertest.Key
	data         string
	nodeRoot     string // the local node's releases
	unauthorized *receivertest.Client
}

// env is added to the receiver's environment (settings: GITRECEIVE_KEY).
func newFixture(t *testing.T, env ...string) *fixture {
	t.Helper()
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen")
	f := &fixture{data: t.TempDir(), keysDir: t.TempDir()}
	f.aliceKey = receivertest.NewKey(t, f.keysDir, "alice")
	f.bobKey = receivertest.NewKey(t, f.keysDir, "bob")
	receivertest.AddKey(t, bin, f.data, f.aliceKey, "--admin")
	receivertest.AddKey(t, bin, f.data, f.bobKey, "--apps", "myapp")
	// The local node (where deploys go while no node is added) keeps its
	// releases here instead of the host's /srv.
	f.nodeRoot = filepath.Join(f.data, "local-node")
	f.srv = receivertest.StartProcess(t, bin, f.data, append([]string{agent.RootEnv + "=" + f.nodeRoot}, env...)...)
	f.alice = receivertest.NewClient(t, f.srv.Server, f.aliceKey)
	f.bob = receivertest.NewClient(t, f.srv.Server, f.bobKey)
	f.unauthorized = receivertest.NewClient(t, f.srv.Server, receivertest.NewKey(t, f.keysDir, "mallory"))
	return f
}

// fanOutBed is a receiver with count test-bed nodes added to it and set
// up (`nodes setup --all`: nginx and the uWSGI emperor running).
func fanOutBed(t *testing.T, prefix, subnet string, count int, env ...string) (*fixture, *testbed.Bed) {
	t.Helper()
	testbed.Require(t)
	requireStack(t)
	f := newFixture(t, env...)
	bed := receivertest.NewBed(t, bin, f.data, prefix, subnet, count)
	return f, bed
}

// load sends GETs (a fresh connection each) from clients goroutines to
// every node until stop is closed and at least min requests were made
// (bounded by a minute), and returns the count and the failures.
func load(nodes []*testbed.Node, host string, clients, min int, stop <-chan struct{}) (total int64, failures []string) {
	return loadWith(nodes, clients, min, stop, func(n *testbed.Node) (int, string) { return get(n, host, "/") })
}

// loadWith is load with fetch making each request (a status other than 200
// is a failure).
func loadWith(nodes []*testbed.Node, clients, min int, stop <-chan struct{}, fetch func(*testbed.Node) (int, string)) (total int64, failures []string) {
	var n atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Minute)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					if n.Load() >= int64(min) {
						return
					}
				default:
				}
				node := nodes[(c+i)%len(nodes)]
				code, body := fetch(node)
				n.Add(1)
				if code != 200 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %d %.80q", node.Name, code, body))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return n.Load(), failures
}

// The shared helpers, under the names these tests use.
var (
	requireStack = receivertest.RequireStack
	get          = receivertest.Get
	mustContain  = receivertest.MustContain
)
