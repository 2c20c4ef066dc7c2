//go:build bench

package main_test

// `make bench`: measured, not asserted. Pushes of a 5,000-file / 60 MB app
// through gitreceive, against raw `git push` of the same commits over
// OpenSSH to a bare repository on a private sshd, in the same run.

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

const (
	benchFiles = 5000
	benchBytes = 60 << 20
	benchRuns  = 5
)

func TestBenchPipeline(t *testing.T) {
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen", "/usr/sbin/sshd")
	f := newFixture(t)
	sshd := startSSHD(t, f.alice)

	var rawFirst, rawOne, grFirst, grOne, buildFirst, buildOne, pipeFirst, pipeOne []time.Duration
	for i := 0; i < benchRuns; i++ {
		app := fmt.Sprintf("bench%d", i)
		work := bigApp(t, f.alice, app)
		bare := filepath.Join(sshd.root, app+".git")
		if out, err := exec.Command("git", "init", "-q", "--bare", bare).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v\n%s", err, out)
		}
		rawURL := fmt.Sprintf("ssh://root@127.0.0.1:%d%s", sshd.port, bare)

		rawFirst = append(rawFirst, timed(t, f.alice, work, rawURL))
		grFirst = append(grFirst, timed(t, f.alice, work, f.alice.URL(app)))
		buildFirst = append(buildFirst, lastLogged(t, f.srv, "release built"))
		pipeFirst = append(pipeFirst, lastLogged(t, f.srv, "push accepted"))

		f.alice.Commit(t, work, "one file", map[string]string{"src/f00042.py": fmt.Sprintf("changed = %d\n", i)})
		rawOne = append(rawOne, timed(t, f.alice, work, rawURL))
		grOne = append(grOne, timed(t, f.alice, work, f.alice.URL(app)))
		buildOne = append(buildOne, lastLogged(t, f.srv, "release built"))
		pipeOne = append(pipeOne, lastLogged(t, f.srv, "push accepted"))
	}

	fmt.Printf("\nbuilder pipeline, %d files / %d MB, median of %d runs\n", benchFiles, benchBytes>>20, benchRuns)
	fmt.Printf("%-22s %12s %14s %10s %14s %10s %10s\n", "push", "raw git+ssh", "gitreceive", "build", "local deploy", "total/raw", "build/raw")
	row := func(name string, raw, gr, build, pipe []time.Duration) {
		r, g, b, p := median(raw), median(gr), median(build), median(pipe)
		fmt.Printf("%-22s %12s %14s %10s %14s %9.2fx %9.2fx\n", name, r.Round(time.Millisecond), g.Round(time.Millisecond),
			b.Round(time.Millisecond), (p - b).Round(time.Millisecond), float64(g)/float64(r), float64(b)/float64(r))
	}
	row("first push", rawFirst, grFirst, buildFirst, pipeFirst)
	row("one-file change", rawOne, grOne, buildOne, pipeOne)
	fmt.Println("build = builder time, local deploy = the rest of the pre-receive handler (phase 1 + switch on node local), both from the server log")
	fmt.Println("target for the one-file change: build < 0.20x of the raw push")
}

// bigApp makes a work tree of benchFiles files totalling benchBytes.
func bigApp(t *testing.T, c *receivertest.Client, app string) string {
	t.Helper()
	files := receivertest.App(app, nil)
	rng := rand.New(rand.NewSource(int64(len(app))))
	per := benchBytes / benchFiles
	buf := make([]byte, per)
	for i := 0; len(files) < benchFiles; i++ {
		rng.Read(buf)
		files[fmt.Sprintf("src/f%05d.py", i)] = fmt.Sprintf("%x", buf[:per/2])
	}
	return c.WorkTree(t, files)
}

func timed(t *testing.T, c *receivertest.Client, dir, url string) time.Duration {
	t.Helper()
	start := time.Now()
	c.MustGit(t, dir, "push", "-q", url, "main")
	return time.Since(start)
}

// lastLogged reads the duration of the newest log entry with message.
func lastLogged(t *testing.T, p *receivertest.Process, message string) time.Duration {
	t.Helper()
	var d time.Duration
	for _, line := range strings.Split(p.Logs(), "\n") {
		var e struct {
			Message  string
			Duration float64
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == message {
			d = time.Duration(e.Duration * float64(time.Millisecond))
		}
	}
	return d
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

type sshdProc struct {
	port int
	root string
}

// startSSHD runs a private OpenSSH sshd on a loopback port that lets key in
// as root: the baseline transport for a raw git push.
func startSSHD(t *testing.T, c *receivertest.Client) sshdProc {
	t.Helper()
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, []byte(c.Key.PubLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := 20000 + rand.Intn(20000)
	cfg := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf("ListenAddress 127.0.0.1:%d\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile %s/sshd.pid\n", port, hostKey, auth, dir)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// The client pins this host key too.
	pub, _ := os.ReadFile(hostKey + ".pub")
	c.TrustHost(t, fmt.Sprintf("[127.0.0.1]:%d %s", port, pub))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := exec.Command("ssh-keyscan", "-p", fmt.Sprint(port), "127.0.0.1").CombinedOutput(); err == nil && len(out) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sshd did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	root := filepath.Join(dir, "repos")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	return sshdProc{port: port, root: root}
}

// TestBenchFanOut: a one-file change of the 60 MB app deployed to 1, 2, 4
// and 8 test-bed nodes, against `rsync -a --delete --link-dest` of the same
// change to the same nodes, in the same run.
func TestBenchFanOut(t *testing.T) {
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen", "rsync")
	testbed.Require(t)
	f := newFixture(t)
	line, err := nodes.OpenFleet(f.data).AuthorizedKeyLine()
	if err != nil {
		t.Fatal(err)
	}
	bed := testbed.New(t, testbed.Options{Prefix: "bf", Subnet: "10.77.230.0/24", Count: 8, AuthorizedKeys: []string{line, f.aliceKey.PubLine}})
	f.alice.TrustHost(t, bed.KnownHosts())
	const changes = 3
	// Every node set up once (nginx, the emperor): deploys start the app.
	for _, n := range bed.Nodes {
		if out, err := exec.Command(bin, "nodes", "--data", f.data, "add", n.Name, "root@"+n.IP).CombinedOutput(); err != nil {
			t.Fatalf("nodes add: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command(bin, "nodes", "--data", f.data, "setup", "--all").CombinedOutput(); err != nil {
		t.Fatalf("nodes setup: %v\n%s", err, out)
	}

	fmt.Printf("\nfan-out of a one-file change, %d files / %d MB, median of %d\n", benchFiles, benchBytes>>20, changes)
	fmt.Printf("%-6s %12s %14s %12s %10s\n", "nodes", "gitreceive", "bytes/node", "rsync", "gr/rsync")
	var one time.Duration
	for _, k := range []int{1, 2, 4, 8} {
		for _, n := range bed.Nodes {
			exec.Command(bin, "nodes", "--data", f.data, "remove", n.Name).Run()
		}
		for _, n := range bed.Nodes[:k] {
			if out, err := exec.Command(bin, "nodes", "--data", f.data, "add", n.Name, "root@"+n.IP).CombinedOutput(); err != nil {
				t.Fatalf("nodes add: %v\n%s", err, out)
			}
		}
		app := fmt.Sprintf("fan%d", k)
		work := bigApp(t, f.alice, app)
		f.alice.MustGit(t, work, "push", "-q", f.alice.URL(app), "main")
		rsyncAll(t, f.alice, bed.Nodes[:k], work, app, 0)

		var gr, rs []time.Duration
		for i := 1; i <= changes; i++ {
			f.alice.Commit(t, work, "one file", map[string]string{"src/f00042.py": fmt.Sprintf("changed = %d\n", i)})
			gr = append(gr, timed(t, f.alice, work, f.alice.URL(app)))
			start := time.Now()
			rsyncAll(t, f.alice, bed.Nodes[:k], work, app, i)
			rs = append(rs, time.Since(start))
		}
		if k == 1 {
			one = median(gr)
		}
		fmt.Printf("%-6d %12s %14s %12s %9.2fx   (%.2fx of 1 node)\n", k, median(gr).Round(time.Millisecond), lastBytes(f.srv),
			median(rs).Round(time.Millisecond), float64(median(gr))/float64(median(rs)), float64(median(gr))/float64(one))
	}
	fmt.Println("targets: bytes/node <= 1.1x the change + 16 KB; 8 nodes <= 1.3x the time of 1; faster than rsync")
}

// lastBytes is the bytes the newest "node ready" log line reports.
func lastBytes(p *receivertest.Process) string {
	b := "-"
	for _, line := range strings.Split(p.Logs(), "\n") {
		var e struct {
			Message string
			Bytes   int64
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == "node ready" {
			b = fmt.Sprintf("%d", e.Bytes)
		}
	}
	return b
}

// rsyncAll copies the work tree to /srv/rsync/APP/vN on each node in
// parallel, hard-linking unchanged files from vN-1: the baseline.
func rsyncAll(t *testing.T, c *receivertest.Client, targets []*testbed.Node, work, app string, n int) {
	t.Helper()
	errs := make(chan error, len(targets))
	for _, node := range targets {
		go func() {
			args := []string{"-a", "--delete", "--exclude", ".git", "--rsync-path", fmt.Sprintf("mkdir -p /srv/rsync/%s && rsync", app)}
			if n > 0 {
				args = append(args, fmt.Sprintf("--link-dest=/srv/rsync/%s/v%d", app, n-1))
			}
			args = append(args, work+"/", fmt.Sprintf("root@%s:/srv/rsync/%s/v%d/", node.IP, app, n))
			out, err := exec.Command("rsync", append([]string{"-e", c.SSHCommand()}, args...)...).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("rsync to %s: %v\n%s", node.Name, err, out)
			}
			errs <- err
		}()
	}
	for range targets {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestBenchPushToLive: from `git push` starting to the new version
// answering on every node, for a small app, first deploy and a one-file
// change, on 1 and 4 set-up test-bed nodes; the one-file changes run under
// load (4 clients, a fresh connection per request) and every failed request
// is counted.
func TestBenchPushToLive(t *testing.T) {
	f, bed := fanOutBed(t, "bl", "10.77.231.0/24", 4)
	const runs = 5
	fmt.Printf("\npush-to-live (git push start -> new version answering on every node), median of %d\n", runs)
	fmt.Printf("%-6s %14s %16s %22s %8s\n", "nodes", "first deploy", "one-file change", "requests in switches", "failed")
	for _, k := range []int{1, 4} {
		for _, n := range bed.Nodes {
			exec.Command(bin, "nodes", "--data", f.data, "remove", n.Name).Run()
		}
		for _, n := range bed.Nodes[:k] {
			if out, err := exec.Command(bin, "nodes", "--data", f.data, "add", n.Name, "root@"+n.IP).CombinedOutput(); err != nil {
				t.Fatalf("nodes add: %v\n%s", err, out)
			}
		}
		var first, one []time.Duration
		var requests int64
		var failed []string
		for i := 0; i < runs; i++ {
			app := fmt.Sprintf("live%d-%d", k, i)
			host := app + ".localhost"
			page := func(marker string) map[string]string {
				return map[string]string{"app.py": "def application(environ, start_response):\n" +
					"    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'" + marker + "']\n"}
			}
			work := f.alice.WorkTree(t, receivertest.App(app, page("first")))
			first = append(first, pushToLive(t, f, work, app, bed.Nodes[:k], host, "first"))

			f.alice.Commit(t, work, "one file", page("second"))
			stop := make(chan struct{})
			done := make(chan struct{})
			var n int64
			var fails []string
			go func() {
				defer close(done)
				n, fails = load(bed.Nodes[:k], host, 4, 0, stop)
			}()
			one = append(one, pushToLive(t, f, work, app, bed.Nodes[:k], host, "second"))
			close(stop)
			<-done
			requests += n
			failed = append(failed, fails...)
		}
		fmt.Printf("%-6d %14s %16s %22d %8d\n", k, median(first).Round(time.Millisecond), median(one).Round(time.Millisecond), requests, len(failed))
		if len(failed) > 0 {
			t.Errorf("%d requests failed during switches, e.g. %v", len(failed), failed[:min(3, len(failed))])
		}
	}
	fmt.Println("target: 0 failed requests")
}

// pushToLive pushes work and returns the time until every node answers
// host with marker.
func pushToLive(t *testing.T, f *fixture, work, app string, targets []*testbed.Node, host, marker string) time.Duration {
	t.Helper()
	start := time.Now()
	f.alice.MustGit(t, work, "push", "-q", f.alice.URL(app), "main")
	for _, n := range targets {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if code, body := get(n, host, "/"); code == 200 && body == marker {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never answered %q for %s", n.Name, marker, host)
			}
		}
	}
	return time.Since(start)
}
