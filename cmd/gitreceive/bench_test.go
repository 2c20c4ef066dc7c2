//go:build bench

package main_test

// `make bench`: measured, not asserted. One TestBench runs every section
// (a subtest each), alternating gitreceive runs with baseline runs measured
// in the same process, and prints one markdown table of medians; a complete
// run (every section ran and none failed) also writes bench/results.md.
// Timings never fail a run; errors do (a push refused, a command failing, a
// request failing during a switch).
//
//	GITRECEIVE_BENCH_RUNS   runs per measurement (default 5, >= 5 for results.md)
//	GITRECEIVE_BENCH_CONNS  SSH commands per run in Connections (default 1000)
//	GITRECEIVE_BENCH_PUSHES concurrent pushes per run in ConcurrentPushes (default 50)
//
// One section while developing: go test -tags bench -run '^TestBench$/^Push$' -v ./cmd/gitreceive/

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

const (
	benchFiles = 5000
	benchBytes = 60 << 20
)

// resultsFile is bench/results.md, from this package's directory.
var resultsFile = filepath.Join("..", "..", "bench", "results.md")

// benchEnv reads a positive count from the environment, def when unset.
func benchEnv(t *testing.T, name string, def, max int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		t.Fatalf("%s = %q: want a number from 1 to %d", name, v, max)
	}
	return n
}

func benchRuns(t *testing.T) int { return benchEnv(t, "GITRECEIVE_BENCH_RUNS", 5, 50) }

// benchRow is one line of the table. Ratio is gitreceive / baseline.
type benchRow struct {
	name, gr, base, ratio, target, notes string
}

type benchTable struct {
	rows []benchRow
}

func (b *benchTable) add(name, gr, base, ratio, target, notes string) {
	b.rows = append(b.rows, benchRow{name, gr, base, ratio, target, notes})
}

// addTimes adds a row comparing two medians.
func (b *benchTable) addTimes(name string, gr, base []time.Duration, target, notes string) {
	b.add(name, ms(median(gr)), ms(median(base)), ratio(float64(median(gr)), float64(median(base))), target, notes)
}

func (b *benchTable) markdown() string {
	var s strings.Builder
	s.WriteString("| benchmark | gitreceive | baseline | ratio | target | notes |\n|---|---|---|---|---|---|\n")
	for _, r := range b.rows {
		cells := []string{r.name, r.gr, r.base, r.ratio, r.target, r.notes}
		for i, c := range cells {
			if c == "" {
				c = "-"
			}
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		s.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return s.String()
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// ms shows a duration to people: 12.3 ms, 1.23 s.
func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func mb(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

// TestBench runs every section and prints the table.
func TestBench(t *testing.T) {
	runs := benchRuns(t)
	tb := &benchTable{}
	sections := []struct {
		name string
		run  func(*testing.T, *benchTable)
	}{
		{"Push", benchPush},
		{"FanOut", benchFanOut},
		{"PushToLive", benchPushToLive},
		{"HTTPS", benchHTTPS},
		{"Switch", benchSwitch},
		{"ConcurrentPushes", benchConcurrentPushes},
		{"Connections", benchConnections},
	}
	start := time.Now()
	load0 := loadAverage()
	var incomplete []string
	for _, s := range sections {
		ok := false
		t.Run(s.name, func(t *testing.T) {
			defer func() { ok = !t.Failed() && !t.Skipped() }()
			s.run(t, tb)
		})
		if !ok {
			incomplete = append(incomplete, s.name)
		}
	}
	elapsed := time.Since(start)
	head := fmt.Sprintf("Date: %s  \nCommit: %s  \nMachine: %s  \nLoad average (1 min) at start / end: %s / %s  \n"+
		"Runs per measurement: %d (medians; gitreceive and baseline runs alternate)  \nWall time of the whole bench: %s\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), commit(), machine(), load0, loadAverage(), runs, elapsed.Round(time.Second))
	table := tb.markdown()
	fmt.Printf("\n## gitreceive benchmarks\n\n%s\n%s", head, table)
	switch {
	case len(incomplete) > 0:
		fmt.Printf("\nbench/results.md not written: sections %s did not run or failed\n", strings.Join(incomplete, ", "))
	case runs < 5:
		fmt.Printf("\nbench/results.md not written: GITRECEIVE_BENCH_RUNS=%d (< 5)\n", runs)
	default:
		doc := "# gitreceive benchmark results\n\nWritten by `make bench` (cmd/gitreceive/bench_test.go); see docs/PERFORMANCE.md for what each row measures.\n\n" +
			head + "\n" + table
		if err := os.MkdirAll(filepath.Dir(resultsFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(resultsFile, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("\nwritten to bench/results.md\n")
	}
}

func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if kb := meminfo("MemTotal"); kb > 0 {
		mem = fmt.Sprintf(", %.0f GB RAM", float64(kb)/(1<<20))
	}
	return fmt.Sprintf("%d CPUs (nproc), %s%s, %s/%s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH)
}

func meminfo(key string) int64 {
	data, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(data))[0]
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

// median is the middle value of xs (the upper of the two for an even
// count), 0 for none.
func median[T cmp.Ordered](xs []T) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

type sshdProc struct {
	port int
	root string
	cmd  *exec.Cmd
}

// startSSHD runs a private OpenSSH sshd on a loopback port that lets key in
// as root: the baseline transport for a raw git push and for SSH commands.
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
	// A free port, as far as the kernel knows now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := filepath.Join(dir, "sshd_config")
	// MaxStartups as on the test-bed nodes: the default (10:30:100) drops
	// connections at random once 10 are authenticating, and the concurrent
	// benchmarks have up to 50. KexAlgorithms: the key exchange gitreceive
	// negotiates with the same clients (curve25519); left to itself an
	// OpenSSH pair picks sntrup761x25519, which costs ~0.1 s of CPU per
	// connection here and would make the baseline, not the server, slow.
	conf := fmt.Sprintf("ListenAddress 127.0.0.1:%d\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin prohibit-password\n"+
		"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile %s/sshd.pid\nMaxStartups 100:30:200\n"+
		"KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org\n",
		port, hostKey, auth, dir)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	// sshd runs commands through the user's shell, and bash sources
	// ~/.bashrc when sshd starts it: root's here may run `pyenv init`
	// (~0.2 s of CPU), which would slow every baseline push and command.
	// The baseline is a plain git server, so sshd runs in a private mount
	// namespace where that file is empty.
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfg)
	if u, err := user.Current(); err == nil {
		if rc := filepath.Join(u.HomeDir, ".bashrc"); fileExists(rc) {
			empty := filepath.Join(dir, "empty")
			if err := os.WriteFile(empty, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd = exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
				`mount --bind "$1" "$2" && exec /usr/sbin/sshd -D -e -f "$3"`, "sh", empty, rc, cfg)
		}
	}
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
	return sshdProc{port: port, root: root, cmd: cmd}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// repo makes an empty bare repository and returns its ssh:// URL. Unless
// plain, it is configured as gitreceive configures its repositories
// (receiver/repos.go): every pushed object checked (receive.fsckObjects),
// push options advertised, every ref update logged.
func (s sshdProc) repo(t *testing.T, name string, plain bool) string {
	t.Helper()
	bare := filepath.Join(s.root, name+".git")
	cmds := [][]string{{"init", "-q", "--bare", bare}}
	if !plain {
		cmds = append(cmds, []string{"-C", bare, "config", "receive.fsckObjects", "true"},
			[]string{"-C", bare, "config", "receive.advertisePushOptions", "true"},
			[]string{"-C", bare, "config", "core.logAllRefUpdates", "always"})
	}
	for _, args := range cmds {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return fmt.Sprintf("ssh://root@127.0.0.1:%d%s", s.port, bare)
}

// deployOff is a second receiver, with `deploy = false`, that alice may
// push to: the receiver as a plain git mirror.
type deployOff struct {
	srv   *receivertest.Process
	alice *receivertest.Client
}

func startDeployOff(t *testing.T, f *fixture) deployOff {
	t.Helper()
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, apps.ConfigFileName), []byte("deploy = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	receivertest.AddKey(t, bin, data, f.aliceKey, "--admin")
	srv := receivertest.StartProcess(t, bin, data)
	return deployOff{srv: srv, alice: receivertest.NewClient(t, srv.Server, f.aliceKey)}
}

// benchFanOut: a one-file change of the 60 MB app deployed to 1, 2, 4 and
// 8 test-bed nodes, against `rsync -a --delete --link-dest` of the same
// change to the same nodes, alternating, in the same run.
func benchFanOut(t *testing.T, tb *benchTable) {
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen", "rsync")
	testbed.Require(t)
	f := newFixture(t)
	line, err := nodes.OpenFleet(f.data).AuthorizedKeyLine()
	if err != nil {
		t.Fatal(err)
	}
	bed := testbed.New(t, testbed.Options{Prefix: "bf", Subnet: "10.77.230.0/24", Count: 8, AuthorizedKeys: []string{line, f.aliceKey.PubLine}})
	f.alice.TrustHost(t, bed.KnownHosts())
	changes := benchRuns(t)
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
	fmt.Printf("%-6s %12s %14s %14s %12s %10s\n", "nodes", "gitreceive", "bytes/node", "slowest node", "rsync", "gr/rsync")
	var one, eight []time.Duration
	for _, k := range []int{1, 2, 4, 8} {
		for _, n := range bed.Nodes {
			_ = exec.Command(bin, "nodes", "--data", f.data, "remove", n.Name).Run()
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

		var gr, rs, slowest, switches []time.Duration
		var bytes []int64
		for i := 1; i <= changes; i++ {
			f.alice.Commit(t, work, "one file", map[string]string{"src/f00042.py": fmt.Sprintf("changed = %d\n", i)})
			gr = append(gr, timed(t, f.alice, work, f.alice.URL(app)))
			b, d := lastReady(f.srv, k)
			bytes, slowest = append(bytes, b), append(slowest, d)
			switches = append(switches, lastSwitch(f.srv))
			start := time.Now()
			rsyncAll(t, f.alice, bed.Nodes[:k], work, app, i)
			rs = append(rs, time.Since(start))
		}
		switch k {
		case 1:
			one = gr
		case 8:
			eight = gr
		}
		fmt.Printf("%-6d %12s %14d %14s %12s %9.2fx   (%.2fx of 1 node)\n", k, median(gr).Round(time.Millisecond), median(bytes),
			median(slowest).Round(time.Millisecond), median(rs).Round(time.Millisecond), float64(median(gr))/float64(median(rs)), float64(median(gr))/float64(median(one)))
		tb.addTimes(fmt.Sprintf("3. fan-out: one-file change of the 60 MB app to %d node%s", k, map[bool]string{true: "", false: "s"}[k == 1]),
			gr, rs, "< 1x (faster than rsync)",
			fmt.Sprintf("whole `git push` (build, upload of the change, verify, start + health check, switch) vs `rsync -a --delete --link-dest` "+
				"of the work tree to the same nodes (a copy, nothing started); %d bytes sent per node (target <= 1.1x the change + 16 KB); "+
				"slowest node's phase 1 %s, switch (phase 2) %s", median(bytes), ms(median(slowest)), ms(median(switches))))
	}
	tb.addTimes("3. fan-out: one-file change to 8 nodes vs to 1 node", eight, one, "<= 1.3x", "the `git push` times of the rows above")
	fmt.Println("targets: bytes/node <= 1.1x the change + 16 KB; 8 nodes <= 1.3x the time of 1; faster than rsync")
}

// lastReady is the bytes (median over nodes) and the longest duration of
// the newest push's k "node ready" log lines.
func lastReady(p *receivertest.Process, k int) (int64, time.Duration) {
	type ready struct {
		Message  string
		Bytes    int64
		Duration float64
	}
	var all []ready
	for _, line := range strings.Split(p.Logs(), "\n") {
		var e ready
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == "node ready" {
			all = append(all, e)
		}
	}
	if len(all) > k {
		all = all[len(all)-k:]
	}
	var bytes []int64
	var slowest time.Duration
	for _, e := range all {
		bytes = append(bytes, e.Bytes)
		slowest = max(slowest, time.Duration(e.Duration*float64(time.Millisecond)))
	}
	return median(bytes), slowest
}

// lastSwitch is the duration of the newest push's phase 2 (its "switch" log line).
func lastSwitch(p *receivertest.Process) time.Duration {
	var d time.Duration
	for _, line := range strings.Split(p.Logs(), "\n") {
		var e struct {
			Message  string
			Duration float64
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == "switch" {
			d = time.Duration(e.Duration * float64(time.Millisecond))
		}
	}
	return d
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

// benchPushToLive: from `git push` starting to the new version answering
// on every node, for a small app, first deploy and a one-file change, on 1
// and 4 set-up test-bed nodes; the one-file changes run under load (4
// clients, a fresh connection per request) and every failed request is
// counted (and fails the run: that is an error, not a timing).
func benchPushToLive(t *testing.T, tb *benchTable) {
	f, bed := fanOutBed(t, "bl", "10.77.231.0/24", 4)
	runs := benchRuns(t)
	fmt.Printf("\npush-to-live (git push start -> new version answering on every node), median of %d\n", runs)
	fmt.Printf("%-6s %14s %16s %22s %8s\n", "nodes", "first deploy", "one-file change", "requests in switches", "failed")
	for _, k := range []int{1, 4} {
		useNodes(t, f, bed.Nodes[:k], bed.Nodes)
		var first, one []time.Duration
		var requests int64
		var failed []string
		for i := 0; i < runs; i++ {
			app := fmt.Sprintf("live%d-%d", k, i)
			host := app + ".localhost"
			work := f.alice.WorkTree(t, receivertest.App(app, page("first")))
			first = append(first, pushToLive(t, f, work, app, bed.Nodes[:k], host, "first"))

			f.alice.Commit(t, work, "one file", page("second"))
			d, n, fails := duringLoad(func(stop <-chan struct{}) (int64, []string) { return load(bed.Nodes[:k], host, 4, 0, stop) },
				func() time.Duration { return pushToLive(t, f, work, app, bed.Nodes[:k], host, "second") })
			one = append(one, d)
			requests += n
			failed = append(failed, fails...)
		}
		fmt.Printf("%-6d %14s %16s %22d %8d\n", k, median(first).Round(time.Millisecond), median(one).Round(time.Millisecond), requests, len(failed))
		nodesName := nodeCount(k)
		tb.add("4. push-to-live: first deploy of a small app, "+nodesName, ms(median(first)), "", "", "",
			"`git push` start to the new release answering over HTTP on every node; no baseline (DESIGN.md: a rewrite-and-wait peer, Piku, took 1.5-4.3 s, median 2.9 s, for a one-line change)")
		tb.add("4. push-to-live: one-file change under load, "+nodesName, ms(median(one)), "", "", "0 failed requests",
			fmt.Sprintf("%d requests (4 clients, fresh connections) during the %d switches, %d failed", requests, runs, len(failed)))
		if len(failed) > 0 {
			t.Errorf("%d requests failed during switches, e.g. %v", len(failed), failed[:min(3, len(failed))])
		}
	}
	fmt.Println("target: 0 failed requests")
}

// useNodes makes targets the receiver's only nodes out of all.
func useNodes(t *testing.T, f *fixture, targets, all []*testbed.Node) {
	t.Helper()
	for _, n := range all {
		_ = exec.Command(bin, "nodes", "--data", f.data, "remove", n.Name).Run()
	}
	for _, n := range targets {
		if out, err := exec.Command(bin, "nodes", "--data", f.data, "add", n.Name, "root@"+n.IP).CombinedOutput(); err != nil {
			t.Fatalf("nodes add: %v\n%s", err, out)
		}
	}
}

// duringLoad runs push while loadUntil sends requests, until push has
// returned: the push's time and loadUntil's count and failures.
func duringLoad(loadUntil func(stop <-chan struct{}) (int64, []string), push func() time.Duration) (time.Duration, int64, []string) {
	stop := make(chan struct{})
	done := make(chan struct{})
	var n int64
	var fails []string
	go func() {
		defer close(done)
		n, fails = loadUntil(stop)
	}()
	d := push()
	close(stop)
	<-done
	return d, n, fails
}

// nodeCount is "1 node" or "K nodes".
func nodeCount(k int) string {
	if k == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", k)
}

// page is an app.py answering marker as plain text.
func page(marker string) map[string]string {
	return map[string]string{"app.py": "def application(environ, start_response):\n" +
		"    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'" + marker + "']\n"}
}

// pushToLive pushes work's main to app and returns the time from the
// push's start to marker answering for host on every target node.
func pushToLive(t *testing.T, f *fixture, work, app string, targets []*testbed.Node, host, marker string) time.Duration {
	live, _ := pushWatchingLive(t, f, work, app, targets, host, marker)
	return live
}

// pushWatchingLive pushes work's main to app, polling every target node
// for marker every 5 ms from the push's start, and returns when the
// release answered on every node (live) and when the push ended (pushed):
// a push says "live" at the switch, and ends after what follows it on the
// nodes (the workers switch, tidying older releases).
func pushWatchingLive(t *testing.T, f *fixture, work, app string, targets []*testbed.Node, host, marker string) (live, pushed time.Duration) {
	t.Helper()
	start := time.Now()
	cmd := f.alice.GitCmd(context.Background(), work, "push", "-q", f.alice.URL(app), "main")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pushed = time.Since(start)
		ended <- err
	}()
	for _, n := range targets {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if code, body := get(n, host, "/"); code == 200 && body == marker {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never answered %q for %s; the push said:\n%s", n.Name, marker, host, out.String())
			}
		}
	}
	live = time.Since(start)
	if err := <-ended; err != nil {
		t.Fatalf("git push: %v\n%s", err, out.String())
	}
	return live, pushed
}
