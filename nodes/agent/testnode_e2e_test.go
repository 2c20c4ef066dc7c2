//go:build e2e

package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	serverfiles "github.com/gitreceive/gitreceive/server-files"
)

// setUpTestNode leaves node as `nodes setup` would (server-files' script
// run inside it: nginx and the emperor up) and copies this test binary to
// helperPath inside it, where exec (running a command in the node) can
// start it: the binary lives in the host's /tmp, which nodes do not see.
func setUpTestNode(t *testing.T, node *testbed.Node, exec func(args ...string) (string, error), helperPath string) {
	t.Helper()
	if err := serverfiles.Extract(filepath.Join(node.Dir, "srv", strings.TrimPrefix(rtSetupDir, "/srv/"))); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(node.Dir, "srv", strings.TrimPrefix(helperPath, "/srv/")), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// As the agent's setup does: the emperor starts vassals through this
	// binary (TestMain answers to the wrapper's name).
	if out, err := exec("sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && ln -sfn \"$2\" \"$1\"", "sh", vassalWrapperPath, helperPath); err != nil {
		t.Fatalf("linking the vassal wrapper: %v\n%s", err, out)
	}
	if out, err := exec("env", "SERVERROOT="+rtSetupDir+"/"+serverfiles.RootName, "bash", rtSetupDir+"/"+serverfiles.ScriptName); err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
}

// testNode is one set-up test node the e2e tests start, route and run
// releases on.
type testNode struct {
	t      *testing.T
	bed    *testbed.Bed
	node   *testbed.Node
	rt     Runtime
	client *http.Client // to the node's nginx (the route tests)
}

// fs is path p of the node's file system as the host reaches it.
func (n *testNode) fs(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", n.node.PID), p)
}

// exec runs args in the node, not under the test's context (clean-ups
// look at the node after it is cancelled).
func (n *testNode) exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := n.bed.Exec(ctx, n.node, args...)
	return string(out), err
}

func (n *testNode) mustExec(args ...string) string {
	n.t.Helper()
	out, err := n.exec(args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}
