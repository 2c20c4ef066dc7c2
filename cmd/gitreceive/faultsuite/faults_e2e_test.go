//go:build e2e

package faultsuite

// The fault suite (issue 9): nodes, the receiver and the pusher failing at
// each step of a deploy, deploys under load and concurrent pushes. Each
// case checks what an operator relies on: a failed push says which node
// failed, every node keeps serving what it served (asked over HTTP), no
// release that was not switched to everywhere is live anywhere, and the
// next push after the fault is fixed goes live on every node.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// faultBed is a receiver and count set-up test-bed nodes whose /srv (where
// releases live) is a tmpfs of its own, so that filling it is quick and
// touches nothing else.
type faultBed struct {
	bed   *testbed.Bed
	srv   *receivertest.Process
	alice *receivertest.Client
}

// srvSize and srvInodes bound each node's /srv.
const (
	srvSize   = 128 << 20
	srvInodes = 4096
)

func newFaultBed(t *testing.T, prefix, subnet string, count int) *faultBed {
	t.Helper()
	testbed.Require(t)
	requireStack(t)
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen")
	data, keys := t.TempDir(), t.TempDir()
	alice := receivertest.NewKey(t, keys, "alice")
	receivertest.AddKey(t, bin, data, alice, "--admin")
	// Two releases per instance on each node (the live one and the one
	// before): what a full /srv holds stays small.
	if err := os.WriteFile(filepath.Join(data, "gitreceive.ini"), []byte("keep_releases = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	line, err := nodes.OpenFleet(data).AuthorizedKeyLine()
	if err != nil {
		t.Fatal(err)
	}
	bed := testbed.New(t, testbed.Options{Prefix: prefix, Subnet: subnet, Count: count, AuthorizedKeys: []string{line}})
	for _, n := range bed.Nodes {
		if out, err := bed.Exec(t.Context(), n, "mount", "-t", "tmpfs", "-o",
			fmt.Sprintf("size=%d,nr_inodes=%d,mode=0755", srvSize, srvInodes), "tmpfs", "/srv"); err != nil {
			t.Fatalf("mounting /srv on %s: %v %s", n.Name, err, out)
		}
		if out, err := exec.Command(bin, "nodes", "--data", data, "add", n.Name, "root@"+n.IP).CombinedOutput(); err != nil {
			t.Fatalf("nodes add %s: %v\n%s", n.Name, err, out)
		}
	}
	if out, err := exec.Command(bin, "nodes", "--data", data, "setup", "--all").CombinedOutput(); err != nil {
		t.Fatalf("nodes setup: %v\n%s", err, out)
	}
	fb := &faultBed{bed: bed}
	fb.srv = receivertest.StartProcess(t, bin, data)
	fb.alice = receivertest.NewClient(t, fb.srv.Server, alice)
	return fb
}

// inNode is path inside node n, as the host sees it.
func inNode(n *testbed.Node, path string) string {
	return filepath.Join("/proc", fmt.Sprint(n.PID), "root", path)
}

// appDir is an instance's directory on node n.
func appDir(n *testbed.Node, app, instance string) string {
	return inNode(n, filepath.Join("/srv/gitreceive/apps", app, instance))
}

// pushRun is a git push whose stderr is watched line by line as it
// streams, so that a fault can be injected at a given step.
type pushRun struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu     sync.Mutex
	stderr strings.Builder
	seen   chan struct{} // closed and replaced whenever output arrives
}

func startPush(t *testing.T, c *receivertest.Client, dir string, args ...string) *pushRun {
	t.Helper()
	cmd := c.GitCmd(context.Background(), dir, append([]string{"push"}, args...)...)
	// git and its ssh in one process group: a dropped pusher is both killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pushRun{cmd: cmd, done: make(chan struct{}), seen: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := stderr.Read(buf)
			p.mu.Lock()
			p.stderr.Write(buf[:n])
			close(p.seen)
			p.seen = make(chan struct{})
			p.mu.Unlock()
			if err != nil {
				break
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
	return p
}

func (p *pushRun) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// waitOutput waits until the push printed want (or ended, or a minute
// passed) and reports whether it did.
func (p *pushRun) waitOutput(want string) bool {
	deadline := time.After(time.Minute)
	for {
		p.mu.Lock()
		got, seen := strings.Contains(p.stderr.String(), want), p.seen
		p.mu.Unlock()
		if got {
			return true
		}
		select {
		case <-seen:
		case <-p.done:
			return strings.Contains(p.output(), want)
		case <-deadline:
			return false
		}
	}
}

func (p *pushRun) mustSee(t *testing.T, want string) {
	t.Helper()
	if !p.waitOutput(want) {
		t.Fatalf("the push never printed %q:\n%s", want, p.output())
	}
}

// wait waits for the push to end (up to two minutes) and returns its
// error (nil: accepted).
func (p *pushRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(2 * time.Minute):
		t.Fatalf("the push did not end within 2 minutes:\n%s", p.output())
		return nil
	}
}

// The apps the fault cases deploy answer with their name, version and
// release number. Their health check holds phase 1 on a node for as long
// as /tmp/flt-hold exists there (at most 50 s, within harakiri and the
// health check's timeout).
const holdFile = "/tmp/flt-hold"

func faultApp(app, version string) map[string]string {
	return map[string]string{
		"app.ini": "[production]\napp_name = " + app + "\nrunner = app.py\ndefault_location = " + app + ".example.com\n" +
			"health_check = /health\nhealth_check_timeout = 90\n",
		"app.py": "import os, time\nBODY = " + fmt.Sprintf("%q", app+" "+version) + "\n" +
			"def application(environ, start_response):\n" +
			"    if environ.get('PATH_INFO') == '/health':\n" +
			"        deadline = time.time() + 50\n" +
			"        while os.path.exists('" + holdFile + "') and time.time() < deadline:\n            time.sleep(0.02)\n" +
			"        body = b'ok'\n" +
			"    else:\n        body = ('%s release %s\\n' % (BODY, os.environ.get('SILVER_RELEASE', '?'))).encode()\n" +
			"    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])\n" +
			"    return [body]\n",
	}
}

// live is what every node must serve: a version of an app's production
// instance at a release.
type live struct {
	app, version string
	number       int
}

func (l live) host() string { return l.app + ".example.com" }
func (l live) body() string { return fmt.Sprintf("%s %s release %d\n", l.app, l.version, l.number) }

// checkServing asserts that every node of ns answers HTTP with want and
// has its production instance's current -> releases/vN.
func checkServing(t *testing.T, ns []*testbed.Node, want live) {
	t.Helper()
	for _, n := range ns {
		if code, body := get(n, want.host(), "/"); code != 200 || body != want.body() {
			t.Fatalf("%s: GET http://%s/ = %d %q, want %q", n.Name, want.host(), code, body, want.body())
		}
		if got := currentRelease(n, want.app, "production"); got != want.number {
			t.Fatalf("%s: %s's current -> v%d, want v%d", n.Name, want.app, got, want.number)
		}
	}
}

// currentRelease is the release an instance's current symlink names on
// node n (0: none).
func currentRelease(n *testbed.Node, app, instance string) int {
	target, err := os.Readlink(filepath.Join(appDir(n, app, instance), "current"))
	if err != nil {
		return 0
	}
	v, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(target), "v"))
	return v
}

// releaseDir is release number of app's production instance on node n.
func releaseDir(n *testbed.Node, app string, number int) string {
	return filepath.Join(appDir(n, app, "production"), "releases", fmt.Sprintf("v%d", number))
}

// nextPushGoesLive pushes main once a fault is gone, as every fault case
// ends: next goes live on every node, which serve it and keep only cur and
// next. It returns what the pusher saw, for the case's own checks.
func (fb *faultBed) nextPushGoesLive(t *testing.T, work string, cur, next live) string {
	t.Helper()
	r := fb.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, fmt.Sprintf("fltapp v%d (main) is live on 3 nodes", next.number))
	checkServing(t, fb.bed.Nodes, next)
	for _, n := range fb.bed.Nodes {
		checkTidy(t, n, "fltapp", cur.number, next.number)
	}
	return r.Stderr
}

// checkTidy asserts that node n holds the release directories and runs
// the vassals of exactly the releases want (keep_releases = 2: the live one
// and the one before): what a failed deploy left there is gone or was
// replaced.
func checkTidy(t *testing.T, n *testbed.Node, app string, want ...int) {
	t.Helper()
	var dirs, vassals []int
	entries, _ := os.ReadDir(filepath.Join(appDir(n, app, "production"), "releases"))
	for _, e := range entries {
		if v, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "v")); err == nil && e.IsDir() {
			dirs = append(dirs, v)
		}
	}
	entries, _ = os.ReadDir(inNode(n, "/etc/gitreceive/vassals"))
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), app+".production.v"); ok {
			if v, err := strconv.Atoi(strings.TrimSuffix(rest, ".ini")); err == nil {
				vassals = append(vassals, v)
			}
		}
	}
	slices.Sort(dirs)
	slices.Sort(vassals)
	if !slices.Equal(dirs, want) || !slices.Equal(vassals, want) {
		t.Fatalf("%s: %s has release dirs %v and vassals %v, want %v", n.Name, app, dirs, vassals, want)
	}
}

// checkGone waits (up to 10 s) until no node of ns holds release number
// of app: a deploy that failed or was cancelled removed it.
func checkGone(t *testing.T, ns []*testbed.Node, app string, number int) {
	t.Helper()
	for _, n := range ns {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			_, err := os.Stat(releaseDir(n, app, number))
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s kept v%d of a deploy that did not go live", n.Name, number)
			}
		}
	}
}

// branchAt is the commit a branch of the app points at on the receiver,
// as `git ls-remote` shows it ("" when there is no such branch).
func branchAt(t *testing.T, c *receivertest.Client, app, branch string) string {
	t.Helper()
	r := c.MustGit(t, "", "ls-remote", c.URL(app), "refs/heads/"+branch)
	commit, _, _ := strings.Cut(r.Stdout, "\t")
	return commit
}

func head(t *testing.T, c *receivertest.Client, work string) string {
	t.Helper()
	return strings.TrimSpace(c.MustGit(t, work, "rev-parse", "HEAD").Stdout)
}

// nodeFault is one way a node fails, and its repair.
type nodeFault struct {
	name string
	// cutOff: while injected the node cannot be reached at all, not even
	// over HTTP.
	cutOff bool
	inject func(t *testing.T, b *testbed.Bed, n *testbed.Node)
	fix    func(t *testing.T, b *testbed.Bed, n *testbed.Node)
}

var (
	sshdKilled = nodeFault{
		name: "sshd-killed",
		inject: func(t *testing.T, b *testbed.Bed, n *testbed.Node) {
			// The listener and every session: the pooled connection dies too.
			if out, err := b.Exec(t.Context(), n, "pkill", "-9", "-x", "sshd|sshd-session"); err != nil {
				t.Fatalf("killing sshd on %s: %v %s", n.Name, err, out)
			}
			// pkill only sends the signal: the fault is in place once the
			// processes are gone and their ends of the agent's pipes closed
			// (a switch released right after must find its receiver gone).
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, err := b.Exec(t.Context(), n, "pgrep", "-x", "sshd|sshd-session"); err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("sshd on %s still runs 10 s after SIGKILL", n.Name)
				}
			}
		},
		fix: func(t *testing.T, b *testbed.Bed, n *testbed.Node) {
			if err := b.StartSSHD(t.Context(), n); err != nil {
				t.Fatal(err)
			}
		},
	}
	linkCut = nodeFault{
		name:   "link-cut",
		cutOff: true,
		// The host end of the node's veth (named like its namespace):
		// packets either way are dropped without a word, as on a dead link.
		inject: func(t *testing.T, b *testbed.Bed, n *testbed.Node) { setLink(t, n, "down") },
		fix:    func(t *testing.T, b *testbed.Bed, n *testbed.Node) { setLink(t, n, "up") },
	}
	diskFull = nodeFault{
		name:   "disk-full",
		inject: func(t *testing.T, b *testbed.Bed, n *testbed.Node) { fillDisk(t, n) },
		fix: func(t *testing.T, b *testbed.Bed, n *testbed.Node) {
			if err := os.RemoveAll(inNode(n, "/srv/flt-fill")); err != nil {
				t.Fatal(err)
			}
		},
	}
)

func setLink(t *testing.T, n *testbed.Node, state string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "set", n.Namespace, state).CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s %s: %v %s", n.Namespace, state, err, out)
	}
}

// fillDisk fills the node's /srv: every block (one preallocated file) and
// every inode (empty files), so that writing a file, making a directory or
// a symlink there all fail with ENOSPC.
func fillDisk(t *testing.T, n *testbed.Node) {
	t.Helper()
	dir := inNode(n, "/srv/flt-fill")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The node's processes (its live app's logs) may take a few blocks
	// between measuring and allocating: a refused allocation is tried
	// again with half of what is free then.
	for i, half := 0, false; ; i++ {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * st.Bsize
		if free == 0 {
			break
		}
		if i == 64 {
			t.Fatalf("%s still has %d bytes free after 64 allocations", n.Name, free)
		}
		if half {
			free = max(free/2, st.Bsize)
		}
		f, err := os.Create(filepath.Join(dir, "blocks"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		err = syscall.Fallocate(int(f.Fd()), 0, 0, free)
		f.Close()
		if err != nil && !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("fallocate %d bytes on %s: %v", free, n.Name, err)
		}
		half = err != nil
	}
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) || i > srvInodes {
				t.Fatalf("filling the inodes of %s: %v after %d files", n.Name, err, i)
			}
			return
		}
		f.Close()
	}
}

// The steps of a deploy at which something fails.
const (
	beforeUpload = "before-upload"
	midUpload    = "mid-upload"
	afterPhase1  = "after-phase-1"
	midPhase2    = "mid-phase-2"
)

// nodeProcess is the host pid of a process running on node n whose
// command line holds args in a row (0: none).
func nodeProcess(n *testbed.Node, args ...string) int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", n.PID))
	if err != nil {
		return 0
	}
	want := "\x00" + strings.Join(args, "\x00") + "\x00"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == n.PID {
			continue
		}
		if other, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); other != ns {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains("\x00"+string(cmdline), want) {
			return pid
		}
	}
	return 0
}

// routedTo reports whether node n's route link for app's production
// instance points at release number: its switch's rename is done, and
// its answer to the receiver follows (it then waits in its prepare
// session for the others to switch).
func routedTo(n *testbed.Node, app string, number int) bool {
	target, err := os.Readlink(inNode(n, filepath.Join(agent.SystemRuntime().RoutesDir, agent.InstanceID(app, "production")+".sock")))
	return err == nil && strings.HasSuffix(target, fmt.Sprintf(".v%d.sock", number))
}

// switching reports whether node n's agent is switching app's production
// instance: in the deploy's prepare session (phase 2 on the receiver's
// word, then the workers and tidying) or an activate of its own.
func switching(n *testbed.Node, app string) bool {
	return nodeProcess(n, "node", "prepare", app, "production") != 0 || nodeProcess(n, "node", "activate", app, "production") != 0
}

// until polls cond every 10 ms for up to a minute.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// holdPhase1 keeps node n in phase 1 (its health check waits) until
// the returned func is called.
func holdPhase1(t *testing.T, n *testbed.Node) (release func()) {
	t.Helper()
	if err := os.WriteFile(inNode(n, holdFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	release = func() { os.Remove(inNode(n, holdFile)) }
	t.Cleanup(release)
	return release
}

// holdRouting takes node n's routing lock (the agent's flock around nginx
// changes), holding a switch on that node in its routing step, after it
// pointed current at the new release, until the returned func is called.
func holdRouting(t *testing.T, n *testbed.Node) (release func()) {
	t.Helper()
	f, err := os.OpenFile(inNode(n, "/etc/gitreceive/nginx/.gitreceive-route.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { f.Close() }) }
	t.Cleanup(release)
	return release
}

// stopReceiving waits until node n's agent receives release number of app,
// with content arriving in its release directory, and stops it (SIGSTOP): the upload is
// under way and goes no further until the returned func resumes it.
func stopReceiving(t *testing.T, n *testbed.Node, app string, number int) (resume func()) {
	t.Helper()
	incoming := filepath.Join(releaseDir(n, app, number), ".incoming")
	// The directory exists a moment before the first content lands in it:
	// wait for content, so that the stop falls mid-stream.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if entries, err := os.ReadDir(incoming); err == nil && len(entries) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never began to receive v%d", n.Name, number)
		}
	}
	// Phase 1 runs in one agent session (prepare); a node sent everything
	// again runs receive --full in a session of its own.
	pid := nodeProcess(n, "node", "prepare", app, "production", strconv.Itoa(number))
	if pid == 0 {
		pid = nodeProcess(n, "node", "receive", app, "production", strconv.Itoa(number))
	}
	if pid == 0 {
		t.Fatalf("no agent receiving v%d on %s", number, n.Name)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(resume)
	// Still under way: the big content is not all in.
	var got int64
	entries, _ := os.ReadDir(incoming)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			got += fi.Size()
		}
	}
	if len(entries) == 0 || got >= blobSize {
		t.Fatalf("%s had received %d bytes of v%d (%d files) when it was stopped: not in the middle of the upload", n.Name, got, number, len(entries))
	}
	t.Logf("%s stopped after receiving %d of %d bytes", n.Name, got, blobSize)
	return resume
}

// blobSize is the new content of a release whose upload is to be caught
// under way: more than the SSH window and the pipes hold.
const blobSize = 8 << 20

// inSwitch waits until the push says it switches to release number and
// node n (held by holdRouting) has pointed current at it.
func inSwitch(t *testing.T, p *pushRun, n *testbed.Node, app string, number int) {
	t.Helper()
	p.mustSee(t, fmt.Sprintf("Switching 3 nodes to v%d", number))
	until(t, n.Name+" points current at v"+strconv.Itoa(number), func() bool { return currentRelease(n, app, "production") == number })
}

// pushBrokenAt pushes work's main as release number of fltapp and breaks
// the push at step with breakIt: before it starts (beforeUpload; breakIt
// gets nil), with node x's agent stopped in the middle of receiving
// (midUpload), once x is ready while y is held in phase 1 (afterPhase1),
// or while x is held in its switch (midPhase2). It returns the push,
// still running.
func pushBrokenAt(t *testing.T, fb *faultBed, work, step string, x, y *testbed.Node, number int, breakIt func(*pushRun)) *pushRun {
	t.Helper()
	var release func()
	switch step {
	case beforeUpload:
		breakIt(nil)
	case afterPhase1:
		release = holdPhase1(t, y)
	case midPhase2:
		release = holdRouting(t, x)
	}
	p := startPush(t, fb.alice, work, "silver", "main")
	switch step {
	case midUpload:
		resume := stopReceiving(t, x, "fltapp", number)
		breakIt(p)
		resume()
	case afterPhase1:
		// x is ready (phase 1 done there); y still works.
		p.mustSee(t, fmt.Sprintf("%-8s ready", x.Name))
		breakIt(p)
		release()
	case midPhase2:
		inSwitch(t, p, x, "fltapp", number)
		breakIt(p)
		release()
	}
	return p
}

// randomBlob is n bytes that git cannot compress or delta.
func randomBlob(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// blamed reports whether an error line of the push names node.
func blamed(out string, node *testbed.Node) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " !     ") && strings.Contains(line, node.Name) {
			return true
		}
	}
	return false
}

// TestFaultNodes breaks one node of three at each step of a deploy: its
// sshd killed, its disk filled. The fault tests run in parallel with each
// other: most of their time is spent waiting.
func TestFaultNodes(t *testing.T) {
	t.Parallel()
	runNodeFaults(t, newFaultBed(t, "flt", "10.77.233.0/24", 3), sshdKilled, diskFull)
}

// TestFaultNodeLinks cuts one node's link at each step of a deploy. Each
// case waits for the receiver to give the node up (its keepalive, then a
// dial timeout: about 20-25 s), so it has a bed of its own and runs beside
// the other fault tests.
func TestFaultNodeLinks(t *testing.T) {
	t.Parallel()
	runNodeFaults(t, newFaultBed(t, "fln", "10.77.235.0/24", 3), linkCut)
}

func runNodeFaults(t *testing.T, fb *faultBed, faults ...nodeFault) {
	bed := fb.bed
	work := fb.alice.WorkTree(t, faultApp("fltapp", "initial"))
	fb.alice.MustGit(t, work, "remote", "add", "silver", fb.alice.URL("fltapp"))
	fb.alice.MustGit(t, work, "push", "silver", "main")
	cur := live{"fltapp", "initial", 1}
	checkServing(t, bed.Nodes, cur)

	i := 0
	for _, fault := range faults {
		for _, step := range []string{beforeUpload, midUpload, afterPhase1, midPhase2} {
			// The broken node (and the one held in phase 1) changes from
			// case to case.
			x, y := bed.Nodes[i%3], bed.Nodes[(i+1)%3]
			i++
			ok := t.Run(fault.name+"/"+step, func(t *testing.T) {
				began := time.Now()
				next := live{"fltapp", fault.name + "-" + step, cur.number + 1}
				files := faultApp("fltapp", next.version)
				if step == midUpload {
					// More than the SSH window and the pipes hold: the
					// upload is still under way when the node stops reading.
					files["blob.bin"] = randomBlob(t, blobSize)
				}
				fb.alice.Commit(t, work, next.version, files)
				p := pushBrokenAt(t, fb, work, step, x, y, next.number, func(*pushRun) { fault.inject(t, bed, x) })
				err := p.wait(t)
				out := p.output()
				t.Logf("push ended after %s: %v\n%s", time.Since(began).Round(time.Millisecond), err, out)
				others := slices.DeleteFunc(slices.Clone(bed.Nodes), func(n *testbed.Node) bool { return n == x })
				if fault.name == diskFull.name && step == midPhase2 {
					// x had pointed current at vN before its disk filled;
					// routing nginx to vN needs no space there, so the
					// switch went through everywhere.
					if err != nil {
						t.Fatalf("push rejected although every node could switch:\n%s", out)
					}
					cur = next
					checkServing(t, bed.Nodes, cur)
					fault.fix(t, bed, x)
					next = live{"fltapp", next.version + "-after", cur.number + 1}
					fb.alice.Commit(t, work, next.version, faultApp("fltapp", next.version))
				} else {
					if err == nil {
						t.Fatalf("push accepted although %s failed (%s at %s)", x.Name, fault.name, step)
					}
					mustContain(t, out, "Push rejected: nothing was changed.")
					if !blamed(out, x) {
						t.Fatalf("the rejection does not name %s:\n%s", x.Name, out)
					}
					for _, n := range others {
						if blamed(out, n) {
							t.Fatalf("the rejection blames %s, which did not fail:\n%s", n.Name, out)
						}
					}
					if fault.cutOff {
						checkServing(t, others, cur)
					} else {
						checkServing(t, bed.Nodes, cur)
					}
					checkGone(t, others, "fltapp", next.number)
					logged := logCount(fb.srv, tookBackLine)
					fault.fix(t, bed, x)
					if fault.cutOff && step == midPhase2 {
						// x finished its switch while cut off, where nobody
						// could tell it to go back: the receiver switches it
						// back once it answers again.
						until(t, "the receiver switched "+x.Name+" back", func() bool {
							code, body := get(x, cur.host(), "/")
							return code == 200 && body == cur.body() && currentRelease(x, "fltapp", "production") == cur.number
						})
						until(t, "the receiver logged it", func() bool { return logCount(fb.srv, tookBackLine) > logged })
					}
					checkServing(t, bed.Nodes, cur)
				}

				fb.nextPushGoesLive(t, work, cur, next)
				cur = next
				t.Logf("%s at %s: %s", fault.name, step, time.Since(began).Round(time.Millisecond))
			})
			if !ok {
				return
			}
		}
	}
}

// tookBackLine is what the receiver logs for each node it switches back
// from a release no deploy recorded.
const tookBackLine = "switched back a node an interrupted deploy left on an unrecorded release"

// kill drops the pusher: git and its ssh, killed together.
func (p *pushRun) kill() { syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

// logCount is how many lines of the receiver's log hold s.
func logCount(p *receivertest.Process, s string) int { return strings.Count(p.Logs(), s) }

// leftovers says which releases above number of app are on node n: their
// directories and vassals.
func leftovers(n *testbed.Node, app string, number int) string {
	var found []string
	for v := number + 1; v <= number+3; v++ {
		if _, err := os.Stat(releaseDir(n, app, v)); err == nil {
			found = append(found, fmt.Sprintf("releases/v%d", v))
		}
		if _, err := os.Stat(inNode(n, fmt.Sprintf("/etc/gitreceive/vassals/%s.production.v%d.ini", app, v))); err == nil {
			found = append(found, fmt.Sprintf("vassal v%d", v))
		}
	}
	return strings.Join(found, ", ")
}

// processesOf lists the processes whose command line or environment names
// dir: what a receiver serving from that data dir started.
func processesOf(dir string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		environ, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if bytes.Contains(cmdline, []byte(dir)) || bytes.Contains(environ, []byte(dir)) {
			found = append(found, e.Name()+" "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return found
}

// TestFaultReceiverKilled SIGKILLs the receiver in the middle of a deploy
// and starts it again on the same data dir and port; then git fails to
// move the branch of a release that went live (faultBranchNotMoved).
func TestFaultReceiverKilled(t *testing.T) {
	t.Parallel()
	fb := newFaultBed(t, "fkr", "10.77.234.0/24", 3)
	bed := fb.bed
	work := fb.alice.WorkTree(t, faultApp("fltapp", "initial"))
	fb.alice.MustGit(t, work, "remote", "add", "silver", fb.alice.URL("fltapp"))
	fb.alice.MustGit(t, work, "push", "silver", "main")
	cur := live{"fltapp", "initial", 1}

	for _, step := range []string{midUpload, midPhase2} {
		ok := t.Run(step, func(t *testing.T) {
			next := live{"fltapp", "killed-" + step, cur.number + 1}
			files := faultApp("fltapp", next.version)
			if step == midUpload {
				files["blob.bin"] = randomBlob(t, blobSize)
			}
			fb.alice.Commit(t, work, next.version, files)
			before := branchAt(t, fb.alice, "fltapp", "main")
			x := bed.Nodes[1]
			others := slices.DeleteFunc(slices.Clone(bed.Nodes), func(n *testbed.Node) bool { return n == x })
			p := pushBrokenAt(t, fb, work, step, x, nil, next.number, func(*pushRun) {
				if step == midPhase2 {
					// The other nodes have switched and said so; x is in
					// the middle of its switch.
					for _, n := range others {
						until(t, n.Name+" switched", func() bool {
							return currentRelease(n, "fltapp", "production") == next.number &&
								routedTo(n, "fltapp", next.number)
						})
					}
				}
				fb.srv.Kill()
			})
			if err := p.wait(t); err == nil {
				t.Fatalf("push accepted although its receiver was killed:\n%s", p.output())
			}
			t.Logf("the pusher saw:\n%s", p.output())
			// Nothing the killed receiver started lives on (git and its
			// hook end when they lose it), and no quarantine is left.
			until(t, "the killed receiver's git and hook have exited", func() bool { return len(processesOf(fb.srv.DataDir)) == 0 })
			quarantines := func() []string {
				q, _ := filepath.Glob(filepath.Join(fb.srv.DataDir, "repos", "fltapp.git", "objects", "tmp_objdir-incoming-*"))
				return q
			}
			// git 2.39 leaves the push's quarantine when the daemon's
			// going kills it with SIGPIPE; the next push removes it.
			t.Logf("quarantines after the kill: %v", quarantines())

			fb.srv.Restart(t)
			if got := branchAt(t, fb.alice, "fltapp", "main"); got != before {
				t.Fatalf("main moved to %s, want %s", got, before)
			}
			switch step {
			case midUpload:
				checkServing(t, bed.Nodes, cur)
			case midPhase2:
				// x went back by itself when its receiver hung up mid-switch;
				// the nodes that had switched before the receiver died are
				// switched back by the restarted receiver (repair).
				until(t, x.Name+" switched back", func() bool { return !switching(x, "fltapp") })
				until(t, "the restarted receiver switched every node back", func() bool {
					for _, n := range bed.Nodes {
						code, body := get(n, cur.host(), "/")
						if code != 200 || body != cur.body() || currentRelease(n, "fltapp", "production") != cur.number {
							return false
						}
					}
					return true
				})
				checkServing(t, bed.Nodes, cur)
				until(t, "the receiver logged the repair", func() bool {
					return strings.Contains(fb.srv.Logs(), tookBackLine)
				})
			}
			for _, n := range bed.Nodes {
				t.Logf("%s after the kill: %s", n.Name, leftovers(n, "fltapp", cur.number))
			}

			// The lock died with the receiver: the next push does not wait.
			out := fb.nextPushGoesLive(t, work, cur, next)
			if strings.Contains(out, "waiting for") {
				t.Fatalf("the push after the restart waited for a lock:\n%s", out)
			}
			if q := quarantines(); len(q) > 0 {
				t.Fatalf("quarantine left after the next push: %v", q)
			}
			cur = next
		})
		if !ok {
			return
		}
	}
	t.Run("branch-not-moved", func(t *testing.T) { faultBranchNotMoved(t, fb, work, cur) })
}

// faultBranchNotMoved: a release goes live in pre-receive, before git moves
// the branch, and git can still fail to (here another writer holds the
// ref's lock). The receiver sees the branch unmoved once receive-pack
// ends and takes the release back: every node serves the old release, the
// history does not hold the new one, and the next push makes the same
// number live.
func faultBranchNotMoved(t *testing.T, fb *faultBed, work string, cur live) {
	bed := fb.bed
	next := live{"fltapp", "branch-not-moved", cur.number + 1}
	fb.alice.Commit(t, work, next.version, faultApp("fltapp", next.version))
	before := branchAt(t, fb.alice, "fltapp", "main")
	lock := filepath.Join(fb.srv.DataDir, "repos", "fltapp.git", "refs", "heads", "main.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := fb.alice.Git(t, work, "push", "silver", "main")
	t.Logf("the pusher saw:\n%s", r.Stderr)
	if r.Code == 0 {
		t.Fatalf("push accepted although git could not move main:\n%s", r.Stderr)
	}
	mustContain(t, r.Stderr, fmt.Sprintf("fltapp v%d (main) is live on 3 nodes", next.number))
	mustContain(t, r.Stderr, fmt.Sprintf("git did not move main to %.7s after v%d of fltapp went live (git says why): v%d was taken back, and the nodes are on v%d again. Push again.",
		head(t, fb.alice, work), next.number, next.number, cur.number))
	mustContain(t, r.Stderr, "Push rejected: nothing was changed.")
	if got := branchAt(t, fb.alice, "fltapp", "main"); got != before {
		t.Fatalf("main moved to %s, want %s", got, before)
	}
	checkServing(t, bed.Nodes, cur)
	for _, n := range bed.Nodes {
		if got := currentRelease(n, "fltapp", "production"); got != cur.number {
			t.Fatalf("%s: current is v%d, want v%d", n.Name, got, cur.number)
		}
	}
	checkGone(t, bed.Nodes, "fltapp", next.number)
	histData, err := os.ReadFile(filepath.Join(fb.srv.DataDir, "releases", "fltapp", "production", "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	hist := string(histData)
	if lines := strings.Split(strings.TrimSpace(hist), "\n"); !strings.Contains(lines[len(lines)-1], fmt.Sprintf(`"number":%d,`, cur.number)) {
		t.Fatalf("the history's newest release is not v%d:\n%s", cur.number, hist)
	}
	for _, f := range []string{"v%d.spec.json", "v%d.manifest.json"} {
		if _, err := os.Stat(filepath.Join(fb.srv.DataDir, "releases", "fltapp", "production", fmt.Sprintf(f, next.number))); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s of the release taken back: %v", fmt.Sprintf(f, next.number), err)
		}
	}
	until(t, "the receiver logged the take-back", func() bool {
		return strings.Contains(fb.srv.Logs(), "git did not move the branch of a release that went live; taking it back")
	})

	// The lock gone, the same push goes live as the same release number.
	os.Remove(lock)
	r = fb.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, fmt.Sprintf("fltapp v%d (main) is live on 3 nodes", next.number))
	checkServing(t, bed.Nodes, next)
	for _, n := range bed.Nodes {
		checkTidy(t, n, "fltapp", cur.number, next.number)
	}
}

// TestFaultPusherDropped kills the pusher's git and ssh at each step of a
// deploy.
func TestFaultPusherDropped(t *testing.T) {
	t.Parallel()
	fb := newFaultBed(t, "fpd", "10.77.236.0/24", 3)
	bed := fb.bed
	work := fb.alice.WorkTree(t, faultApp("fltapp", "initial"))
	fb.alice.MustGit(t, work, "remote", "add", "silver", fb.alice.URL("fltapp"))
	fb.alice.MustGit(t, work, "push", "silver", "main")
	cur := live{"fltapp", "initial", 1}

	for i, step := range []string{beforeUpload, midUpload, afterPhase1, midPhase2} {
		x, y := bed.Nodes[i%3], bed.Nodes[(i+1)%3]
		ok := t.Run(step, func(t *testing.T) {
			next := live{"fltapp", "dropped-" + step, cur.number + 1}
			files := faultApp("fltapp", next.version)
			if step == midUpload {
				files["blob.bin"] = randomBlob(t, blobSize)
			}
			fb.alice.Commit(t, work, next.version, files)
			if step == beforeUpload {
				// A pusher dropped while it waits for the app's lock, before
				// its deploy began: the push holding the lock (kept in phase
				// 1 on y meanwhile) is not disturbed, and nothing of the
				// dropped one is deployed.
				release := holdPhase1(t, y)
				holder := startPush(t, fb.alice, work, "silver", "main")
				holder.mustSee(t, fmt.Sprintf("Uploading release v%d", next.number))
				p := startPush(t, fb.alice, work, "silver", "HEAD:refs/heads/dropped")
				p.mustSee(t, "waiting for alice's deploy of main")
				p.kill()
				if err := p.wait(t); err == nil {
					t.Fatal("the killed push succeeded")
				}
				release()
				if err := holder.wait(t); err != nil {
					t.Fatalf("the push holding the lock failed: %v\n%s", err, holder.output())
				}
				cur = next
				checkServing(t, bed.Nodes, cur)
				if got := branchAt(t, fb.alice, "fltapp", "dropped"); got != "" {
					t.Fatalf("the dropped push created its branch at %s", got)
				}
				for _, n := range bed.Nodes {
					if _, err := os.Stat(appDir(n, "fltapp", "branch-dropped")); err == nil {
						t.Fatalf("%s has an instance of the dropped push's branch", n.Name)
					}
				}
				next = live{"fltapp", "after-" + step, cur.number + 1}
				fb.alice.Commit(t, work, next.version, faultApp("fltapp", next.version))
			} else {
				before := branchAt(t, fb.alice, "fltapp", "main")
				ended := logCount(fb.srv, `"message":"session ended"`)
				// Mid phase 2 the switch runs to its end on every node,
				// then every node goes back: git will not move the branch.
				p := pushBrokenAt(t, fb, work, step, x, y, next.number, (*pushRun).kill)
				if err := p.wait(t); err == nil {
					t.Fatal("the killed push succeeded")
				}
				until(t, "the receiver has finished with the dropped push", func() bool { return logCount(fb.srv, `"message":"session ended"`) > ended })
				if got := branchAt(t, fb.alice, "fltapp", "main"); got != before {
					t.Fatalf("main moved to %s, want %s", got, before)
				}
				checkServing(t, bed.Nodes, cur)
				checkGone(t, bed.Nodes, "fltapp", next.number)
			}

			out := fb.nextPushGoesLive(t, work, cur, next)
			if strings.Contains(out, "waiting for") {
				t.Fatalf("the push after the dropped one waited for a lock:\n%s", out)
			}
			cur = next
		})
		if !ok {
			return
		}
	}
}

// faultLoad GETs http://HOST/ on every node (a fresh connection each) from
// clients goroutines until stop is closed (at most five minutes). A
// request fails unless it gets 200 with a body starting with want; bodies
// are counted.
func faultLoad(ns []*testbed.Node, host, want string, clients int, stop <-chan struct{}, started chan<- struct{}) (total int, failures []string, bodies map[string]int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var once sync.Once
	bodies = map[string]int{}
	deadline := time.Now().Add(5 * time.Minute)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := ns[(c+i)%len(ns)]
				code, body := get(n, host, "/")
				mu.Lock()
				total++
				bodies[body]++
				if code != 200 || !strings.HasPrefix(body, want) {
					failures = append(failures, fmt.Sprintf("%s: %d %.80q", n.Name, code, body))
				}
				if total == 20 {
					once.Do(func() { close(started) })
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return total, failures, bodies
}

// TestFaultDeploysUnderLoad: 20 deploys in a row while four clients keep
// asking every node (a fresh connection per request): not one request
// fails.
func TestFaultDeploysUnderLoad(t *testing.T) {
	t.Parallel()
	fb := newFaultBed(t, "flo", "10.77.237.0/24", 3)
	work := fb.alice.WorkTree(t, faultApp("fltapp", "load-1"))
	fb.alice.MustGit(t, work, "remote", "add", "silver", fb.alice.URL("fltapp"))
	fb.alice.MustGit(t, work, "push", "silver", "main")
	cur := live{"fltapp", "load-1", 1}
	checkServing(t, fb.bed.Nodes, cur)

	stop, started, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var total int
	var failures []string
	var bodies map[string]int
	go func() {
		defer close(done)
		total, failures, bodies = faultLoad(fb.bed.Nodes, cur.host(), "fltapp load-", 4, stop, started)
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("the load never got going")
	}
	began := time.Now()
	for d := 2; d <= 21; d++ {
		cur = live{"fltapp", fmt.Sprintf("load-%d", d), d}
		fb.alice.Commit(t, work, cur.version, faultApp("fltapp", cur.version))
		r := fb.alice.MustGit(t, work, "push", "silver", "main")
		mustContain(t, r.Stderr, fmt.Sprintf("fltapp v%d (main) is live on 3 nodes", d))
	}
	elapsed := time.Since(began)
	close(stop)
	<-done
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed across 20 deploys, e.g. %v", len(failures), total, failures[:min(5, len(failures))])
	}
	releases := 0
	for body := range bodies {
		if strings.HasPrefix(body, "fltapp load-") {
			releases++
		}
	}
	t.Logf("20 deploys in %s under load: %d requests, 0 failed, %d releases answered", elapsed.Round(time.Millisecond), total, releases)
	if releases < 10 {
		t.Fatalf("only %d of 21 releases answered the load: it did not run across the deploys", releases)
	}
	checkServing(t, fb.bed.Nodes, cur)
}

// copyTree copies a work tree (with its .git) to a new directory.
func copyTree(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "work")
	if out, err := exec.Command("cp", "-a", dir, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

// logSpans is, per push of the receiver's log, when it began to build and
// when it was accepted.
func logSpans(t *testing.T, logs string) map[string][2]time.Time {
	t.Helper()
	spans := map[string][2]time.Time{}
	for _, line := range strings.Split(logs, "\n") {
		var e struct {
			Push, Message string
			Time          time.Time
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Push == "" {
			continue
		}
		s := spans[e.Push]
		switch e.Message {
		case "release built":
			if s[0].IsZero() {
				s[0] = e.Time
			}
		case "push accepted":
			s[1] = e.Time
		}
		spans[e.Push] = s
	}
	return spans
}

// liveAt is the host the push says the instance is live at.
var liveAt = regexp.MustCompile(`is live on 3 nodes at http://([^ ]+) `)

// TestFaultConcurrentPushes: pushes to one app wait for each other (and
// say for whom); pushes to different apps do not.
func TestFaultConcurrentPushes(t *testing.T) {
	t.Parallel()
	fb := newFaultBed(t, "fcc", "10.77.238.0/24", 3)
	bed := fb.bed
	work := fb.alice.WorkTree(t, faultApp("fltapp", "base"))
	fb.alice.MustGit(t, work, "remote", "add", "silver", fb.alice.URL("fltapp"))
	fb.alice.MustGit(t, work, "push", "silver", "main")
	cur := live{"fltapp", "base", 1}

	// pushAll starts every push at once and waits for all of them.
	pushAll := func(t *testing.T, dirs []string, args func(k int) []string) []*pushRun {
		t.Helper()
		runs := make([]*pushRun, len(dirs))
		for k, dir := range dirs {
			runs[k] = startPush(t, fb.alice, dir, args(k)...)
		}
		for _, p := range runs {
			_ = p.wait(t)
		}
		return runs
	}

	t.Run("one-app-five-branches", func(t *testing.T) {
		var dirs []string
		for k := range 5 {
			dir := copyTree(t, work)
			fb.alice.MustGit(t, dir, "checkout", "-q", "-b", fmt.Sprintf("b%d", k))
			fb.alice.Commit(t, dir, "b", faultApp("fltapp", fmt.Sprintf("b%d", k)))
			dirs = append(dirs, dir)
		}
		logged := len(fb.srv.Logs())
		runs := pushAll(t, dirs, func(k int) []string { return []string{"silver", fmt.Sprintf("b%d", k)} })
		waited := 0
		for k, p := range runs {
			out := p.output()
			if p.err != nil {
				t.Fatalf("push of b%d failed: %v\n%s", k, p.err, out)
			}
			if strings.Contains(out, "waiting for alice's deploy of b") {
				waited++
			}
			m := liveAt.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("push of b%d does not say where it is live:\n%s", k, out)
			}
			want := fmt.Sprintf("fltapp b%d release 1\n", k)
			for _, n := range bed.Nodes {
				if code, body := get(n, m[1], "/"); code != 200 || body != want {
					t.Fatalf("%s: GET http://%s/ = %d %q, want %q", n.Name, m[1], code, body, want)
				}
			}
		}
		// One deploy of the app at a time: no two overlap.
		spans := logSpans(t, fb.srv.Logs()[logged:])
		var sorted [][2]time.Time
		for _, s := range spans {
			if s[0].IsZero() || s[1].IsZero() {
				t.Fatalf("a push lacks its build or its acceptance in the log: %v", spans)
			}
			sorted = append(sorted, s)
		}
		slices.SortFunc(sorted, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
		for k := 1; k < len(sorted); k++ {
			if sorted[k][0].Before(sorted[k-1][1]) {
				t.Fatalf("two deploys of one app overlapped: %v", sorted)
			}
		}
		if len(sorted) != 5 || waited == 0 {
			t.Fatalf("%d deploys logged, %d pushes said they waited; want 5 and at least 1", len(sorted), waited)
		}
		t.Logf("5 branches deployed one after the other; %d pushes waited", waited)
	})

	t.Run("one-branch-five-fast-forwards", func(t *testing.T) {
		// Five pushers hold main at five depths of one line of commits,
		// each a fast-forward of those before it.
		var dirs, commits []string
		for k := range 5 {
			fb.alice.Commit(t, work, "ff", faultApp("fltapp", fmt.Sprintf("ff%d", k)))
			commits = append(commits, head(t, fb.alice, work))
			dirs = append(dirs, copyTree(t, work))
		}
		runs := pushAll(t, dirs, func(int) []string { return []string{"silver", "main"} })
		accepted := -1
		var outcomes []string
		for k, p := range runs {
			out := p.output()
			switch {
			case p.err == nil:
				outcomes = append(outcomes, fmt.Sprintf("ff%d live", k))
				// Each push that goes live moves main forward: the last
				// one (the newest commit) is where main ends, and each made
				// a release.
				mustContain(t, out, "is live on 3 nodes")
				accepted = max(accepted, k)
				cur = live{"fltapp", "", cur.number + 1}
			case strings.Contains(out, "main moved while this push waited"):
				outcomes = append(outcomes, fmt.Sprintf("ff%d waited, then rejected", k))
				mustContain(t, out, "waiting for alice's deploy of main")
				mustContain(t, out, "Push rejected: nothing was changed.")
			case strings.Contains(out, "(fetch first)") || strings.Contains(out, "(non-fast-forward)"):
				// git refused it before sending: main had moved already.
				outcomes = append(outcomes, fmt.Sprintf("ff%d refused by git", k))
			default:
				t.Fatalf("push %d neither went live nor was rejected cleanly: %v\n%s", k, p.err, out)
			}
		}
		t.Logf("five pushes of main: %s", strings.Join(outcomes, ", "))
		if accepted < 0 {
			t.Fatal("none of the five pushes went live")
		}
		cur.version = fmt.Sprintf("ff%d", accepted)
		if got := branchAt(t, fb.alice, "fltapp", "main"); got != commits[accepted] {
			t.Fatalf("main is at %s, want the last accepted push's %s", got, commits[accepted])
		}
		checkServing(t, bed.Nodes, cur)
		// The newest, pushed again, is a fast-forward of what went live.
		if accepted < 4 {
			fb.alice.MustGit(t, dirs[4], "push", "silver", "main")
			cur = live{"fltapp", "ff4", cur.number + 1}
		}
		checkServing(t, bed.Nodes, cur)
	})

	t.Run("five-apps", func(t *testing.T) {
		var dirs []string
		for k := range 5 {
			app := fmt.Sprintf("conc-%d", k)
			dir := fb.alice.WorkTree(t, faultApp(app, "first"))
			fb.alice.MustGit(t, dir, "remote", "add", "silver", fb.alice.URL(app))
			dirs = append(dirs, dir)
		}
		runs := pushAll(t, dirs, func(int) []string { return []string{"silver", "main"} })
		for k, p := range runs {
			out := p.output()
			if p.err != nil {
				t.Fatalf("push of conc-%d failed: %v\n%s", k, p.err, out)
			}
			if strings.Contains(out, "waiting for") {
				t.Fatalf("push of conc-%d waited for another app's deploy:\n%s", k, out)
			}
			checkServing(t, bed.Nodes, live{fmt.Sprintf("conc-%d", k), "first", 1})
		}
	})
}
