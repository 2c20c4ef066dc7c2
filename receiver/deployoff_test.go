//go:build e2e

package receiver_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// With `deploy = false` in DATA/gitreceive.ini the receiver is a plain git
// mirror: pushes pass the same checks and are accepted; nothing is built
// (not even app.ini is read) and nothing is deployed.
func TestDeployOffAcceptsWithoutDeploying(t *testing.T) {
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen")
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, apps.ConfigFileName), []byte("deploy = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := receivertest.NewKey(t, t.TempDir(), "alice")
	receivertest.AddKey(t, bin, data, key, "--admin")
	nodeRoot := filepath.Join(data, "local-node")
	srv := receivertest.StartProcess(t, bin, data, agent.RootEnv+"="+nodeRoot)
	alice := receivertest.NewClient(t, srv.Server, key)

	// No app.ini at all: a deploying receiver rejects this push.
	work := alice.WorkTree(t, map[string]string{"README": "just files\n"})
	r := alice.MustGit(t, work, "push", alice.URL("mirror"), "main")
	want := "-----> mirror: deploy is off on this receiver; main accepted, nothing deployed"
	if !strings.Contains(r.Stderr, want) {
		t.Fatalf("push output lacks %q:\n%s", want, r)
	}
	head := strings.TrimSpace(alice.MustGit(t, work, "rev-parse", "HEAD").Stdout)
	ref, err := os.ReadFile(filepath.Join(data, "repos", "mirror.git", "refs", "heads", "main"))
	if err != nil || strings.TrimSpace(string(ref)) != head {
		t.Fatalf("main on the receiver = %q, %v; want %s", ref, err, head)
	}

	// A branch and a tag in one push: one line names both.
	alice.MustGit(t, work, "branch", "feature-x")
	alice.MustGit(t, work, "tag", "v1")
	r = alice.MustGit(t, work, "push", alice.URL("mirror"), "feature-x", "v1")
	if !strings.Contains(r.Stderr, "deploy is off on this receiver; feature-x, tag v1 accepted, nothing deployed") {
		t.Fatalf("branch and tag push:\n%s", r)
	}
	r = alice.MustGit(t, work, "push", alice.URL("mirror"), ":feature-x")
	if !strings.Contains(r.Stderr, "deploy is off on this receiver; feature-x deleted, nothing deployed") {
		t.Fatalf("delete push:\n%s", r)
	}

	// The receiver's own checks still apply.
	alice.MustGit(t, work, "branch", "x;y")
	if r = alice.Git(t, work, "push", alice.URL("mirror"), "x;y"); r.Code == 0 || !strings.Contains(r.Stderr, "pre-receive hook declined") {
		t.Fatalf("branch x;y was not refused:\n%s", r)
	}
	if r = alice.Git(t, work, "push", alice.URL("mirror"), ":main"); r.Code == 0 || !strings.Contains(r.Stderr, "production instance") {
		t.Fatalf("deleting main was not refused:\n%s", r)
	}

	// Nothing was built or deployed.
	for _, dir := range []string{filepath.Join(data, "releases"), nodeRoot} {
		if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
			t.Errorf("%s holds %d entries; a receiver with deploy off builds nothing", dir, len(entries))
		}
	}
	if !strings.Contains(srv.Logs(), "deploy is off") {
		t.Errorf("the server log does not say the push was accepted without a deploy")
	}
}
