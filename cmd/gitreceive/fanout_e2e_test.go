package main_test

// Pushes fanned out to real nodes: network namespaces running OpenSSH.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/testbed"
)

func TestFanOutToThreeNodes(t *testing.T) {
	testbed.Require(t)
	f := newFixture(t)
	line, err := nodes.OpenFleet(f.data).AuthorizedKeyLine()
	if err != nil {
		t.Fatal(err)
	}
	bed := testbed.New(t, testbed.Options{Prefix: "fan", Subnet: "10.77.220.0/24", Count: 3, AuthorizedKeys: []string{line}})
	for _, n := range bed.Nodes {
		out, err := exec.Command(bin, "nodes", "--data", f.data, "add", n.Name, "root@"+n.IP).CombinedOutput()
		if err != nil {
			t.Fatalf("nodes add %s: %v\n%s", n.Name, err, out)
		}
	}
	// The node's /srv as the host sees it.
	instanceDir := func(n *testbed.Node) string {
		return filepath.Join(n.Dir, "srv", "gitreceive", "apps", "sampleapp", "production")
	}
	// The newest release's manifest, as the receiver recorded it.
	manifestOf := func() agent.Manifest {
		_, m, _, err := builder.History{Dir: filepath.Join(f.data, "releases")}.Last("sampleapp", "production")
		if err != nil {
			t.Fatal(err)
		}
		am := make(agent.Manifest, len(m))
		for i, e := range m {
			am[i] = agent.File{Path: e.Path, Mode: e.Mode, Size: e.Size, SHA256: e.SHA256, Target: e.Target}
		}
		return am
	}

	work := exampleWorkTree(t, f.alice, "djangoapp")
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("sampleapp"))
	r := f.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, "remote: -----> Uploading release v1 to 3 nodes")
	mustContain(t, r.Stderr, "remote: -----> Switched 3 nodes to v1")
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

	// Node 2's sshd dies: the push is rejected naming it, and no node moves.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := bed.Exec(ctx, bed.Nodes[1], "pkill", "-x", "sshd"); err != nil {
		t.Fatalf("killing sshd: %v %s", err, out)
	}
	f.alice.Commit(t, work, "more css", map[string]string{"static/style.css": "body { color: green; }\n"})
	r = f.alice.Git(t, work, "push", "silver", "main")
	if r.Code == 0 {
		t.Fatalf("push succeeded with a node down:\n%s", r.Stderr)
	}
	mustContain(t, r.Stderr, "cannot reach node "+bed.Nodes[1].Name)
	mustContain(t, r.Stderr, "Push rejected: nothing was changed.")
	for _, n := range bed.Nodes {
		dir := instanceDir(n)
		if target, _ := os.Readlink(filepath.Join(dir, "current")); target != "releases/v2" {
			t.Fatalf("%s switched to %q during a failed deploy", n.Name, target)
		}
		if _, err := os.Stat(filepath.Join(dir, "releases", "v3")); err == nil {
			t.Fatalf("%s kept the aborted v3", n.Name)
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
