//go:build e2e

package main_test

// `nodes setup` on real nodes: over SSH, and on the receiver host itself
// (the local node) without SSH.

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

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
	mustContain(t, first, "web1     /proc: remounted with hidepid=invisible")
	mustContain(t, first, "web1     emperor's vassal wrapper: /usr/local/lib/gitreceive/uwsgi-vassal -> /usr/local/lib/gitreceive/gitreceive")
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
	mustContain(t, setupLocal(), "local    /proc: remounted with hidepid=invisible")
	mustContain(t, setupLocal(), "local    setup done: nothing changed")
	if code := httpStatus(t, "http://"+box.IP+"/"); code != http.StatusNotFound {
		t.Fatalf("nginx on the local node answered %d, want 404", code)
	}
}

// The single box `make run` gives: the receiver and its local node on one
// machine, no SSH between them, nginx and uWSGI serving what is pushed. A
// test node plays the machine; the push comes from outside it.
func TestSingleBox(t *testing.T) {
	testbed.Require(t)
	requireStack(t)
	bed := testbed.New(t, testbed.Options{Prefix: "box", Subnet: "10.77.225.0/24", Count: 1})
	box := bed.Nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	inNode := func(args ...string) string {
		t.Helper()
		out, err := bed.Exec(ctx, box, args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if err := os.MkdirAll(filepath.Join(box.Dir, "srv", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", bin, filepath.Join(box.Dir, "srv", "bin", "gitreceive")).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	alice := receivertest.NewKey(t, t.TempDir(), "alice")
	if err := os.WriteFile(filepath.Join(box.Dir, "srv", "alice.pub"), []byte(alice.PubLine+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const gr = "/srv/bin/gitreceive"
	inNode(gr, "keys", "--data", "/srv/receiver", "add", "alice", "--admin", "/srv/alice.pub")
	mustContain(t, inNode(gr, "nodes", "--data", "/srv/receiver", "setup", "local"), "local    setup done")
	addr := net.JoinHostPort(box.IP, "2222")
	inNode("sh", "-c", "setsid -f "+gr+" serve --listen "+addr+" --data /srv/receiver >/srv/serve.log 2>&1")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(box.Dir, "srv", "serve.log"))
			t.Fatalf("the receiver in %s never listened on %s:\n%s", box.Name, addr, log)
		}
	}
	client := receivertest.NewClient(t, receivertest.Server{Addr: addr, DataDir: filepath.Join(box.Dir, "srv", "receiver")}, alice)
	work := exampleWorkTree(t, client, "djangoapp")
	r := client.MustGit(t, work, "push", client.URL("sampleapp"), "main")
	mustContain(t, r.Stderr, "remote:        local    ready")
	mustContain(t, r.Stderr, "sampleapp v1 (main) is live on 1 node")
	t.Logf("push output:\n%s", r.Stderr)
	mustGet(t, box, "sampleapp.example.com", "/", "hello from sampleapp (sampleapp 1.0, tinylib 1.0, release 1)")
	php := exampleWorkTree(t, client, "phpapp")
	client.MustGit(t, php, "push", client.URL("phpapp"), "main")
	mustGet(t, box, "phpapp.localhost", "/anything", "path: /anything")
}
