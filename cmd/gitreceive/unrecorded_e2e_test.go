//go:build e2e

package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// TestFaultUnrecordedLiveRelease: a node can be left live on a release no
// deploy recorded (it finished its switch after the receiver lost it, or
// the receiver died in the middle of phase 2). The next deploy makes that
// same release number, which the node refused as "already live" forever:
// now it is switched back first. On the local node, without a test bed.
func TestFaultUnrecordedLiveRelease(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	work := f.alice.WorkTree(t, receivertest.App("leftapp", nil))
	f.alice.MustGit(t, work, "push", f.alice.URL("leftapp"), "main")
	dir := filepath.Join(f.nodeRoot, "leftapp", "production")
	// v2 as an interrupted deploy leaves it: placed, started and switched
	// to, never recorded.
	for _, c := range [][]string{
		{"cp", "-a", "releases/v1", "releases/v2"},
		{"cp", "releases/v1.manifest.json", "releases/v2.manifest.json"},
		{"cp", "releases/v1.spec.json", "releases/v2.spec.json"},
		{"ln", "-sfn", "releases/v1", "previous"},
		{"ln", "-sfn", "releases/v2", "current"},
	} {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	f.alice.Commit(t, work, "v2", map[string]string{"static/hello.txt": "hello\n"})
	r := f.alice.MustGit(t, work, "push", f.alice.URL("leftapp"), "main")
	mustContain(t, r.Stderr, "local    was live on v2, which an interrupted deploy left there: switched back to v1 first")
	mustContain(t, r.Stderr, "leftapp v2 (main) is live on 1 node")
	if target, _ := os.Readlink(filepath.Join(dir, "current")); target != "releases/v2" {
		t.Fatalf("current -> %q, want releases/v2", target)
	}
	if err := agent.Verify(filepath.Join(dir, "releases", "v2"), lastManifest(t, f, "leftapp")); err != nil {
		t.Fatalf("v2 after the push: %v", err)
	}
}
