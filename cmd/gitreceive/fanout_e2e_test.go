//go:build e2e

package main_test

// Pushes fanned out to real nodes: network namespaces running OpenSSH.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/manifest"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// instanceDir is the node's directory of app's production instance, as
// the host sees it.
func instanceDir(n *testbed.Node, app string) string {
	return filepath.Join(n.Dir, "srv", "gitreceive", "apps", app, "production")
}

// currentOf is where the instance's current symlink points ("" for none).
func currentOf(n *testbed.Node, app string) string {
	target, _ := os.Readlink(filepath.Join(instanceDir(n, app), "current"))
	return target
}

// lastManifest is the newest release's manifest, as the receiver recorded it.
func lastManifest(t *testing.T, f *fixture, app string) manifest.Manifest {
	t.Helper()
	_, m, _, err := builder.History{Dir: filepath.Join(f.data, "releases")}.Last(app, "production")
	if err != nil {
		t.Fatal(err)
	}
	return m.WithoutBlobs()
}

func TestFanOutToThreeNodes(t *testing.T) {
	f, bed := fanOutBed(t, "fan", "10.77.220.0/24", 3)
	loginsBefore := map[string]int{}
	for _, n := range bed.Nodes {
		loginsBefore[n.Name] = logins(t, n)
	}
	instanceDir := func(n *testbed.Node) string { return instanceDir(n, "sampleapp") }
	manifestOf := func() manifest.Manifest { return lastManifest(t, f, "sampleapp") }

	work := exampleWorkTree(t, f.alice, "djangoapp")
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("sampleapp"))
	r := f.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, "remote: -----> Uploading release v1 to 3 nodes")
	mustContain(t, r.Stderr, "remote: -----> Switching 3 nodes to v1")
	v1 := manifestOf()
	for _, n := range bed.Nodes {
		mustContain(t, r.Stderr, "remote:        "+n.Name)
		dir := instanceDir(n)
		if target, err := os.Readlink(filepath.Join(dir, "current")); err != nil || target != "releases/v1" {
			t.Fatalf("%s: current -> %q, %v", n.Name, target, err)
		}
		if err := agent.Verify(filepath.Join(dir, "releases", "v1"), v1); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		// The .pth fix reached the node; the repository kept the original.
		pth, _ := os.ReadFile(filepath.Join(dir, "releases", "v1", "lib/python/sampleapp.pth"))
		mustContain(t, string(pth), "\n../../src\n")
	}

	// A one-file change: only that file's bytes cross the wire, the rest
	// are hard links to v1.
	change := "body { color: blue; }\n"
	f.alice.Commit(t, work, "css", map[string]string{"static/style.css": change})
	r = f.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, "(1 files, ")
	v2 := manifestOf()
	for _, n := range bed.Nodes {
		dir := instanceDir(n)
		if err := agent.Verify(filepath.Join(dir, "releases", "v2"), v2); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if inode(t, filepath.Join(dir, "releases/v1/src/sampleapp/wsgi.py")) != inode(t, filepath.Join(dir, "releases/v2/src/sampleapp/wsgi.py")) {
			t.Fatalf("%s: unchanged file not hard-linked between v1 and v2", n.Name)
		}
	}
	// Bytes on the wire track the change: at most 1.1x the changed content
	// plus 16 KB of framing (the target), on every node.
	deltas := 0
	for _, line := range strings.Split(f.srv.Logs(), "\n") {
		var e struct {
			Message string
			Files   int
			Bytes   int64
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Message != "node ready" || e.Files != 1 {
			continue
		}
		deltas++
		if limit := int64(float64(len(change))*1.1) + 16<<10; e.Bytes > limit {
			t.Fatalf("a one-file change sent %d bytes to a node, more than %d", e.Bytes, limit)
		}
	}
	if deltas != len(bed.Nodes) {
		t.Fatalf("%d nodes received the one-file change as one file, want %d", deltas, len(bed.Nodes))
	}

	// Node 1's live release was edited in place: hard links to it cannot
	// be trusted, so it gets the whole release; the others get the delta.
	tampered := filepath.Join(instanceDir(bed.Nodes[0]), "releases/v2/src/sampleapp/wsgi.py")
	if err := os.WriteFile(tampered, []byte("# edited on the node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.alice.Commit(t, work, "css 3", map[string]string{"static/style.css": "body { color: red; }\n"})
	r = f.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, fmt.Sprintf("%-8s its live release did not match its manifest: sent the whole release", bed.Nodes[0].Name))
	v3 := manifestOf()
	for _, n := range bed.Nodes {
		if err := agent.Verify(filepath.Join(instanceDir(n), "releases", "v3"), v3); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if target := currentOf(n, "sampleapp"); target != "releases/v3" {
			t.Fatalf("%s: current -> %q, want releases/v3", n.Name, target)
		}
	}

	// A push option leaves one node out, by name; unknown names and
	// options are refused before anything is deployed.
	f.alice.Commit(t, work, "css 4", map[string]string{"static/style.css": "body { color: gray; }\n"})
	for _, bad := range []struct{ option, message string }{
		{"skip-node=nosuchnode", "there is no node \"nosuchnode\""},
		{"skip-nodes=" + bed.Nodes[2].Name, "unknown push option"},
		{"skip-node=../x", "invalid node name"},
	} {
		r = f.alice.Git(t, work, "push", "-o", bad.option, "silver", "main")
		if r.Code == 0 {
			t.Fatalf("push -o %s succeeded", bad.option)
		}
		mustContain(t, r.Stderr, bad.message)
		mustContain(t, r.Stderr, "Push rejected: nothing was changed.")
	}
	r = f.alice.MustGit(t, work, "push", "-o", "skip-node="+bed.Nodes[2].Name, "silver", "main")
	mustContain(t, r.Stderr, "Skipping 1 of 3 nodes (push option skip-node)")
	mustContain(t, r.Stderr, "Switching 2 nodes to v4")
	for i, want := range []string{"releases/v4", "releases/v4", "releases/v3"} {
		if got := currentOf(bed.Nodes[i], "sampleapp"); got != want {
			t.Fatalf("%s: current -> %q, want %q", bed.Nodes[i].Name, got, want)
		}
	}
	// The skipped node catches up on the next push, from what it has.
	f.alice.Commit(t, work, "css 5", map[string]string{"static/style.css": "body { color: black; }\n"})
	f.alice.MustGit(t, work, "push", "silver", "main")
	v5 := manifestOf()
	for _, n := range bed.Nodes {
		if err := agent.Verify(filepath.Join(instanceDir(n), "releases", "v5"), v5); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		// Five deploys, one login: the receiver keeps its connection to
		// each node open between deploys.
		if logins := logins(t, n) - loginsBefore[n.Name]; logins != 1 {
			t.Fatalf("%s: %d logins for five deploys, want 1 (a pooled connection)", n.Name, logins)
		}
	}
}

func TestFanOutFaults(t *testing.T) {
	f, bed := fanOutBed(t, "fau", "10.77.222.0/24", 3)
	n2 := bed.Nodes[1]
	work := f.alice.WorkTree(t, receivertest.App("faultapp", nil))
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("faultapp"))
	f.alice.MustGit(t, work, "push", "silver", "main")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// unchanged checks that no node moved off v1 and none kept vN.
	unchanged := func(n int) {
		t.Helper()
		for _, node := range bed.Nodes {
			if got := currentOf(node, "faultapp"); got != "releases/v1" {
				t.Fatalf("%s switched to %q during a failed deploy", node.Name, got)
			}
			waitGone(t, node, filepath.Join(instanceDir(node, "faultapp"), "releases", fmt.Sprintf("v%d", n)))
		}
	}

	// Node 2 is killed mid-upload: its sshd and every session die once
	// its copy of v2 has started to arrive.
	big := make([]byte, 48<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	f.alice.Commit(t, work, "big", map[string]string{"data.bin": string(big)})
	push := f.alice.GitCmd(ctx, work, "push", "silver", "main")
	var stderr bytes.Buffer
	push.Stderr = &stderr
	if err := push.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, filepath.Join(instanceDir(n2, "faultapp"), "releases", "v2"))
	if out, err := bed.Exec(ctx, n2, "pkill", "-9", "-x", "sshd"); err != nil {
		t.Fatalf("killing sshd: %v %s", err, out)
	}
	if err := push.Wait(); err == nil {
		t.Fatalf("push succeeded although %s died mid-upload (the upload may have finished first):\n%s", n2.Name, stderr.String())
	}
	mustContain(t, stderr.String(), "node "+n2.Name)
	mustContain(t, stderr.String(), "Push rejected: nothing was changed.")
	unchanged(2)

	// Node 2 stays down: the next push fails at once, naming it.
	r := f.alice.Git(t, work, "push", "silver", "main")
	if r.Code == 0 {
		t.Fatalf("push succeeded with a node down:\n%s", r.Stderr)
	}
	mustContain(t, r.Stderr, "cannot reach node "+n2.Name)
	mustContain(t, r.Stderr, "Push rejected: nothing was changed.")
	unchanged(2)

	// Once it is back, the same push goes through everywhere.
	if err := bed.StartSSHD(ctx, n2); err != nil {
		t.Fatal(err)
	}
	f.alice.MustGit(t, work, "push", "silver", "main")
	for _, n := range bed.Nodes {
		if err := agent.Verify(filepath.Join(instanceDir(n, "faultapp"), "releases", "v2"), lastManifest(t, f, "faultapp")); err != nil {
			t.Fatalf("%s after recovery: %v", n.Name, err)
		}
	}

	// A push of two branches goes live whole or not at all: the feature
	// instance cannot switch on node 3, so production, which could, is
	// switched back everywhere.
	if err := os.MkdirAll(filepath.Join(instanceDir(bed.Nodes[2], "faultapp"), "..", "branch-feature", ".current.new", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.alice.MustGit(t, work, "branch", "feature")
	f.alice.Commit(t, work, "both", map[string]string{"app.py": "# v3\n" + receivertest.App("faultapp", nil)["app.py"]})
	f.alice.MustGit(t, work, "branch", "-f", "feature")
	r = f.alice.Git(t, work, "push", "silver", "main", "feature")
	if r.Code == 0 {
		t.Fatalf("push of two branches succeeded although one could not switch:\n%s", r.Stderr)
	}
	mustContain(t, r.Stderr, "node "+bed.Nodes[2].Name+": switching branch-feature to v1")
	for _, n := range bed.Nodes {
		if got := currentOf(n, "faultapp"); got != "releases/v2" {
			t.Fatalf("%s: production at %q after a failed two-branch push, want releases/v2", n.Name, got)
		}
	}

	// The pusher's connection drops while v3 is on its way: the deploy is
	// cancelled, every node stays on v2 and drops v3, and the app's lock
	// is free for the next push.
	f.alice.Commit(t, work, "big 2", map[string]string{"data.bin": string(big[1:])})
	push = f.alice.GitCmd(ctx, work, "push", "silver", "main")
	push.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // git and its ssh, killed together
	if err := push.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, filepath.Join(instanceDir(bed.Nodes[0], "faultapp"), "releases", "v3"))
	syscall.Kill(-push.Process.Pid, syscall.SIGKILL)
	push.Wait()
	for _, n := range bed.Nodes {
		if got := currentOf(n, "faultapp"); got != "releases/v2" {
			t.Fatalf("%s: at %q after the pusher left, want releases/v2", n.Name, got)
		}
		waitGone(t, n, filepath.Join(instanceDir(n, "faultapp"), "releases", "v3"))
	}
	r = f.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, "faultapp v3 (main) is live on 3 nodes")

	// Phase 2 fails on node 3 for an app's first release: the nodes that
	// switched are switched off again (there is nothing to go back to),
	// and no node keeps v1.
	blocker := filepath.Join(instanceDir(bed.Nodes[2], "newapp"), ".current.new", "x")
	if err := os.MkdirAll(blocker, 0o755); err != nil {
		t.Fatal(err)
	}
	newWork := f.alice.WorkTree(t, receivertest.App("newapp", nil))
	f.alice.MustGit(t, newWork, "remote", "add", "silver", f.alice.URL("newapp"))
	r = f.alice.Git(t, newWork, "push", "silver", "main")
	if r.Code == 0 {
		t.Fatalf("push succeeded although %s could not switch:\n%s", bed.Nodes[2].Name, r.Stderr)
	}
	mustContain(t, r.Stderr, "node "+bed.Nodes[2].Name+": switching production to v1")
	for _, n := range bed.Nodes {
		if got := currentOf(n, "newapp"); got != "" {
			t.Fatalf("%s: newapp is live at %q after a failed switch", n.Name, got)
		}
		if _, err := os.Stat(filepath.Join(instanceDir(n, "newapp"), "releases", "v1")); err == nil {
			t.Fatalf("%s kept newapp's v1", n.Name)
		}
	}
}

// logins counts the SSH logins a node's sshd accepted so far.
func logins(t *testing.T, n *testbed.Node) int {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(n.Dir, "var-upper", "log", "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(log), "Accepted publickey")
}

// waitFor waits (up to a minute) until path exists: a release has started
// to arrive on a node.
func waitFor(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
	}
}

// waitGone fails unless path (an aborted release) disappears within 5 s: a
// node cut off mid-upload removes it itself once it sees the stream end.
func waitGone(t *testing.T, n *testbed.Node, path string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s kept the aborted %s", n.Name, filepath.Base(path))
		}
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// A hundred nodes: at most 16 are talked to at once, and every one ends
// on the new release.
func TestFanOutToHundredNodes(t *testing.T) {
	f, bed := fanOutBed(t, "hun", "10.77.223.0/24", 100)
	work := f.alice.WorkTree(t, receivertest.App("wideapp", nil))
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("wideapp"))
	f.alice.MustGit(t, work, "push", "silver", "main")
	f.alice.Commit(t, work, "change", map[string]string{"static/hello.txt": "hello\n"})
	r := f.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, "wideapp v2 (main) is live on 100 nodes")
	v2 := lastManifest(t, f, "wideapp")
	for _, n := range bed.Nodes {
		if got := currentOf(n, "wideapp"); got != "releases/v2" {
			t.Fatalf("%s: current -> %q, want releases/v2", n.Name, got)
		}
		if err := agent.Verify(filepath.Join(instanceDir(n, "wideapp"), "releases", "v2"), v2); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
	}
}
