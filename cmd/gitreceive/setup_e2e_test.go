package main_test

// `nodes setup` on real nodes: over SSH, and on the receiver host itself
// (the local node) without SSH.

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/testbed"
)

// requireStack skips (fails with CI=true) when the host lacks the node
// stack: test nodes see the host's packages beneath their overlays.
func requireStack(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"nginx", "uwsgi"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed (CI=true, so not skipping; `make test` installs it)", tool)
			}
			t.Skipf("%s is not installed; `make test` installs it", tool)
		}
	}
}

// httpStatus GETs url (a test-bed address) and returns the status code.
func httpStatus(t *testing.T, url string) int {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestNodesSetup(t *testing.T) {
	testbed.Require(t)
	requireStack(t)
	data := t.TempDir()
	line, err := nodes.OpenFleet(data).AuthorizedKeyLine()
	if err != nil {
		t.Fatal(err)
	}
	bed := testbed.New(t, testbed.Options{Prefix: "su", Subnet: "10.77.221.0/24", Count: 2, AuthorizedKeys: []string{line}})
	web, box := bed.Nodes[0], bed.Nodes[1]
	gitreceive := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"nodes", "--data", data}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("nodes %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	versionOut, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(versionOut))

	gitreceive("add", "web1", "root@"+web.IP)
	mustContain(t, gitreceive("check"), "missing or outdated; run `gitreceive nodes setup web1`")
	first := gitreceive("setup", "web1")
	mustContain(t, first, "web1     agent: installed "+version)
	mustContain(t, first, "web1     user gitreceive-app: created")
	mustContain(t, first, "web1     setup done: ")
	if strings.Contains(first, "nothing changed") {
		t.Fatalf("the first setup changed nothing:\n%s", first)
	}
	// Rerunning is an upgrade that finds nothing to do.
	second := gitreceive("setup", "--all")
	mustContain(t, second, "web1     agent: "+version+", current")
	mustContain(t, second, "web1     setup done: nothing changed")
	check := gitreceive("check", "web1")
	mustContain(t, check, version)
	if code := httpStatus(t, "http://"+web.IP+"/"); code != http.StatusNotFound {
		t.Fatalf("nginx on %s answered %d for an unknown host, want 404", web.Name, code)
	}

	// The single-box install: the receiver host is node local and is set
	// up without SSH. The second test node plays that host.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inNode := filepath.Join(box.Dir, "srv", "bin", "gitreceive")
	if err := os.MkdirAll(filepath.Dir(inNode), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", bin, inNode).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	setupLocal := func() string {
		t.Helper()
		out, err := bed.Exec(ctx, box, "/srv/bin/gitreceive", "nodes", "--data", "/srv/receiver", "setup", "local")
		if err != nil {
			t.Fatalf("nodes setup local: %v\n%s", err, out)
		}
		return string(out)
	}
	mustContain(t, setupLocal(), "local    user gitreceive-app: created")
	mustContain(t, setupLocal(), "local    setup done: nothing changed")
	if code := httpStatus(t, "http://"+box.IP+"/"); code != http.StatusNotFound {
		t.Fatalf("nginx on the local node answered %d, want 404", code)
	}
}
