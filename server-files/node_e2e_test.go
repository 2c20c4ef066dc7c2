//go:build e2e

package serverfiles_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	serverfiles "github.com/gitreceive/gitreceive/server-files"
)

// Where the test extracts the server files, as the node sees it (its /srv is
// the host directory NODE.Dir/srv).
const nodeSetupDir = "/srv/gitreceive-setup"

const nodePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// requireStack skips (fails with CI=true) when the host lacks the stack: the
// nodes see the host's /usr underneath their overlays, so what the host has
// installed counts as installed on the nodes, and the script needs no network.
func requireStack(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"/usr/sbin/nginx", "/usr/bin/uwsgi"} {
		if _, err := os.Stat(bin); err != nil {
			msg := fmt.Sprintf("needs %s on the host: make deps-test, or apt-get install %s", bin, strings.Join(serverfiles.Stack, " "))
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s (CI=true, so not skipping)", msg)
			}
			t.Skip(msg)
		}
	}
}

func TestSetupOnTestNode(t *testing.T) {
	testbed.Require(t)
	requireStack(t)
	bed := testbed.New(t, testbed.Options{Prefix: "sf", Subnet: "10.77.240.0/24", Count: 1})
	node := bed.Nodes[0]
	if err := serverfiles.Extract(filepath.Join(node.Dir, "srv", strings.TrimPrefix(nodeSetupDir, "/srv/"))); err != nil {
		t.Fatal(err)
	}

	hostPasswd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	// The node agent links the emperor's vassal wrapper to itself before it
	// runs the script; here the script runs alone, and uWSGI stands in.
	execNode(t, bed, node, "sh", "-c", "mkdir -p /usr/local/lib/gitreceive && ln -sfn /usr/bin/uwsgi /usr/local/lib/gitreceive/uwsgi-vassal")
	first := runSetup(t, bed, node)
	for _, want := range firstRunLines(t) {
		if !strings.Contains(first, want) {
			t.Errorf("first run's output lacks %q", want)
		}
	}
	if lastLine(first) == "setup done: nothing changed" {
		t.Errorf("first run says nothing changed")
	}

	checkCatchAll(t, node.IP)
	nginxPID := livePID(t, bed, node, "/run/nginx.pid", "nginx")
	emperorPID := livePID(t, bed, node, "/run/gitreceive/emperor.pid", "uwsgi")

	// Where vassals put their sockets and logs: root's directories; nginx's
	// group reaches the sockets, nobody lists the apps' logs.
	for dir, want := range map[string]string{
		"/run/gitreceive/sockets":         "750 root www-data",
		"/var/log/gitreceive/apps":        "711 root root",
		"/var/log/gitreceive/nginx":       "711 root root",
		"/srv/gitreceive/apps":            "711 root root",
		"/var/log/gitreceive/emperor.log": "640 root adm",
	} {
		if got := execNode(t, bed, node, "stat", "-c", "%a %U %G", dir); got != want {
			t.Errorf("%s: %s, want %s", dir, got, want)
		}
	}
	// Users see only their own processes.
	if got := execNode(t, bed, node, "findmnt", "-n", "-o", "OPTIONS", "/proc"); !strings.Contains(got, "hidepid=invisible") {
		t.Errorf("/proc is mounted with %q, want hidepid=invisible", got)
	}
	if got := execNode(t, bed, node, "runuser", "-u", "nobody", "--", "sh", "-c", "test -e /proc/1 && echo visible || echo hidden"); got != "hidden" {
		t.Errorf("nobody sees PID 1 in /proc (%s), want it hidden", got)
	}
	if got := execNode(t, bed, node, "grep", "hidepid", "/etc/fstab"); !strings.Contains(got, "hidepid=invisible") {
		t.Errorf("/etc/fstab has no /proc line with hidepid=invisible: %q", got)
	}
	// Setup adds no user: each instance gets its own when it first starts.
	if after, err := os.ReadFile("/etc/passwd"); err != nil {
		t.Fatal(err)
	} else if string(after) != string(hostPasswd) {
		t.Errorf("setting up the node changed the host's /etc/passwd: the node's /etc overlay leaked")
	}

	// The rerun changes nothing on disk and restarts nothing.
	before := snapshot(t, node)
	second := runSetup(t, bed, node)
	after := snapshot(t, node)
	if got := lastLine(second); got != "setup done: nothing changed" {
		t.Errorf("second run ends with %q, want setup done: nothing changed", got)
	}
	for _, word := range []string{"created", "updated", "removed", "started", "reloaded"} {
		if strings.Contains(second, word) {
			t.Errorf("second run's output mentions %q", word)
		}
	}
	compareSnapshots(t, before, after)
	if pid := livePID(t, bed, node, "/run/nginx.pid", "nginx"); pid != nginxPID {
		t.Errorf("nginx pid %d -> %d: the rerun restarted it", nginxPID, pid)
	}
	if pid := livePID(t, bed, node, "/run/gitreceive/emperor.pid", "uwsgi"); pid != emperorPID {
		t.Errorf("emperor pid %d -> %d: the rerun restarted it", emperorPID, pid)
	}

	t.Run("emperor notices a vassal at the doorbell", func(t *testing.T) {
		testVassalDoorbell(t, node)
	})
	t.Run("upgrade", func(t *testing.T) {
		testUpgrade(t, bed, node, nginxPID)
	})
	t.Run("broken nginx config", func(t *testing.T) {
		testBrokenNginxConfig(t, bed, node, nginxPID)
	})
	t.Run("systemd", func(t *testing.T) {
		testSystemd(t, bed, node)
	})
}

// firstRunLines is what the first run on a fresh node must report. The node
// sees the host's /etc, /var and /usr beneath its overlays, so on a host that
// is itself set up as a node (make run) some of it is there already.
func firstRunLines(t *testing.T) []string {
	t.Helper()
	lines := []string{"created /srv/gitreceive/apps", "nginx: started", "emperor: started", // private /srv and /run
		"/proc: remounted with hidepid=invisible"}
	if _, err := os.Lstat("/etc/nginx/sites-enabled/default"); err == nil {
		lines = append(lines, "removed /etc/nginx/sites-enabled/default")
	}
	for _, rel := range wantFiles {
		ours, err := os.ReadFile(filepath.Join(serverfiles.RootName, rel))
		if err != nil {
			t.Fatal(err)
		}
		if host, err := os.ReadFile("/" + rel); err != nil || string(host) != string(ours) {
			lines = append(lines, "updated /"+rel)
		}
	}
	return lines
}

// runSetup runs the extracted script on node (env holds extra VAR=VALUE)
// and returns its standard output.
func runSetup(t *testing.T, bed *testbed.Bed, node *testbed.Node, env ...string) string {
	t.Helper()
	out, err := trySetup(t, bed, node, env...)
	if err != nil {
		t.Fatalf("setup on %s: %v", node.Name, err)
	}
	return out
}

// trySetup is runSetup for a run that may fail; the error carries stderr.
func trySetup(t *testing.T, bed *testbed.Bed, node *testbed.Node, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	args := append([]string{"env", "SERVERROOT=" + nodeSetupDir + "/" + serverfiles.RootName}, env...)
	args = append(args, "bash", nodeSetupDir+"/"+serverfiles.ScriptName)
	out, err := bed.Exec(ctx, node, args...)
	t.Logf("setup on %s:\n%s", node.Name, out)
	return string(out), err
}

func execNode(t *testing.T, bed *testbed.Bed, node *testbed.Node, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := bed.Exec(ctx, node, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// livePID reads a pidfile on node and checks that it names a live process
// called name.
func livePID(t *testing.T, bed *testbed.Bed, node *testbed.Node, pidfile, name string) int {
	t.Helper()
	pid, err := strconv.Atoi(execNode(t, bed, node, "cat", pidfile))
	if err != nil {
		t.Fatalf("%s on %s: %v", pidfile, node.Name, err)
	}
	if comm := execNode(t, bed, node, "cat", fmt.Sprintf("/proc/%d/comm", pid)); comm != name {
		t.Fatalf("%s on %s names pid %d, which is %q, not %s", pidfile, node.Name, pid, comm, name)
	}
	return pid
}

// checkCatchAll asks nginx on ip for pages of hosts nobody deployed.
func checkCatchAll(t *testing.T, ip string) {
	t.Helper()
	// No proxy from the environment: traffic goes to the node only. Fresh
	// connections: nginx closes idle ones on reload.
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	for _, host := range []string{ip, "unknown.example"} {
		var status int
		var body []byte
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			if status, body, err = get(t, client, "http://"+ip+"/some/path", host); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("GET http://%s/ (Host %s): %v", ip, host, err)
		}
		if status != http.StatusNotFound || !strings.Contains(string(body), "No app is deployed at this address") {
			t.Errorf("GET http://%s/ (Host %s): %d %q, want 404 and our page", ip, host, status, body)
		}
	}
}

func get(t *testing.T, client *http.Client, url, host string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, err
}

// fileState is what a rerun must leave alone.
type fileState struct {
	mode  fs.FileMode
	size  int64
	mtime time.Time
	hash  string // sha256 of a file, target of a symlink
}

// snapshot records the node's writable layers: the upper dirs of its /etc,
// /var and /usr overlays and its private /srv (paths from nodes/testbed's
// nodefiles.go). Logs may grow and are left out.
func snapshot(t *testing.T, node *testbed.Node) map[string]fileState {
	t.Helper()
	states := map[string]fileState{}
	for _, layer := range []string{"etc-upper", "var-upper", "usr-upper", "srv"} {
		root := filepath.Join(node.Dir, layer)
		if _, err := os.Stat(root); err != nil {
			t.Fatalf("node layer: %v (has nodes/testbed's layout changed?)", err)
		}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(node.Dir, path)
			if rel == "var-upper/log" {
				return filepath.SkipDir
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			s := fileState{mode: info.Mode(), size: info.Size(), mtime: info.ModTime()}
			switch {
			case info.Mode().IsRegular():
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				sum := sha256.Sum256(data)
				s.hash = hex.EncodeToString(sum[:])
			case info.Mode()&fs.ModeSymlink != 0:
				if s.hash, err = os.Readlink(path); err != nil {
					return err
				}
			case info.IsDir():
				s.size = 0 // a directory's size says nothing portable
			}
			states[rel] = s
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return states
}

func (s fileState) String() string {
	return fmt.Sprintf("%v %d bytes, mtime %s, %s", s.mode, s.size, s.mtime.Format(time.RFC3339Nano), s.hash)
}

func compareSnapshots(t *testing.T, before, after map[string]fileState) {
	t.Helper()
	for path, b := range before {
		a, ok := after[path]
		switch {
		case !ok:
			t.Errorf("rerun removed %s", path)
		case a != b:
			t.Errorf("rerun changed %s: %v -> %v", path, b, a)
		}
	}
	for path := range after {
		if _, ok := before[path]; !ok {
			t.Errorf("rerun created %s", path)
		}
	}
}

// nodeRoot is the node's file system as the host reaches it.
func nodeRoot(node *testbed.Node) string { return fmt.Sprintf("/proc/%d/root", node.PID) }

// emperorStats connects to the emperor's stats socket (which also makes it
// scan its vassals directory) and returns the vassals it reports.
func emperorStats(t *testing.T, node *testbed.Node) []string {
	t.Helper()
	conn, err := net.DialTimeout("unix", nodeRoot(node)+serverfiles.EmperorStatsSocket, 5*time.Second)
	if err != nil {
		t.Fatalf("emperor stats socket: %v", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(io.LimitReader(conn, 1<<20))
	if err != nil {
		t.Fatalf("emperor stats: %v", err)
	}
	var stats struct {
		Vassals []struct {
			ID string `json:"id"`
		} `json:"vassals"`
	}
	if err := json.Unmarshal(data, &stats); err != nil {
		t.Fatalf("emperor stats %q: %v", data, err)
	}
	var ids []string
	for _, v := range stats.Vassals {
		ids = append(ids, v.ID)
	}
	return ids
}

// The emperor handles one event after another and scans after each, so the
// answer to a second connection already reflects the scan the first one
// caused: no timing involved.
func testVassalDoorbell(t *testing.T, node *testbed.Node) {
	root := nodeRoot(node)
	vassal := filepath.Join(root, serverfiles.VassalsDir, "probe.ini")
	// The vassal binds its socket after dropping to the apps' user, who may
	// not write to /run/gitreceive.
	socket := filepath.Join(root, "tmp/gitreceive-probe.sock")
	config := "[uwsgi]\nsocket = /tmp/gitreceive-probe.sock\nuid = nobody\ngid = nogroup\n"
	tmp := vassal + ".tmp" // the emperor only looks at *.ini
	if err := os.WriteFile(tmp, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, vassal); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(vassal)
		emperorStats(t, node)
	})

	emperorStats(t, node)
	if ids := emperorStats(t, node); !slices.Contains(ids, "probe.ini") {
		t.Fatalf("emperor reports vassals %q right after the doorbell, want probe.ini", ids)
	}
	// And it really runs: its socket appears.
	for attempt := 0; ; attempt++ {
		if _, err := os.Stat(socket); err == nil {
			break
		} else if attempt == 100 {
			log, _ := os.ReadFile(filepath.Join(root, "var/log/gitreceive/emperor.log"))
			t.Fatalf("vassal's socket: %v after 10 s; emperor.log:\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An upgrade: a changed nginx config is put back and nginx reloaded (same
// master), a file an older serverroot installed is removed.
func testUpgrade(t *testing.T, bed *testbed.Bed, node *testbed.Node, nginxPID int) {
	execNode(t, bed, node, "sh", "-c", `echo '# local edit' >> /etc/nginx/conf.d/gitreceive.conf &&
echo old > /etc/gitreceive/retired.conf && echo /etc/gitreceive/retired.conf >> /var/lib/gitreceive/server-files.list`)
	out := runSetup(t, bed, node)
	for _, want := range []string{
		"updated /etc/nginx/conf.d/gitreceive.conf",
		"removed /etc/gitreceive/retired.conf",
		fmt.Sprintf("nginx: reloaded (pid %d)", nginxPID),
		"recorded the installed files in /var/lib/gitreceive/server-files.list",
		"setup done: 4 changes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("upgrade's output lacks %q", want)
		}
	}
	if _, err := os.Lstat(filepath.Join(nodeRoot(node), "etc/gitreceive/retired.conf")); err == nil {
		t.Errorf("retired.conf is still there")
	}
	checkCatchAll(t, node.IP)
	if out := runSetup(t, bed, node); lastLine(out) != "setup done: nothing changed" {
		t.Errorf("run after the upgrade ends with %q", lastLine(out))
	}
}

// A config nginx rejects never reaches the running nginx: the run fails
// with nginx's message and the old config keeps serving.
func testBrokenNginxConfig(t *testing.T, bed *testbed.Bed, node *testbed.Node, nginxPID int) {
	broken := filepath.Join(nodeRoot(node), serverfiles.NginxDir, "broken.conf")
	if err := os.WriteFile(broken, []byte("server { listen 80; no_such_directive on; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Our own config changed too, so the run wants to reload.
	execNode(t, bed, node, "sh", "-c", "echo '# local edit' >> /etc/nginx/conf.d/gitreceive.conf")
	out, err := trySetup(t, bed, node)
	if err == nil || !strings.Contains(err.Error(), "no_such_directive") || !strings.Contains(err.Error(), "configuration test failed") {
		t.Errorf("setup with a broken nginx config: %v, want a failure quoting nginx -t", err)
	}
	if strings.Contains(out, "reloaded") {
		t.Errorf("nginx was reloaded with a broken config")
	}
	if pid := livePID(t, bed, node, "/run/nginx.pid", "nginx"); pid != nginxPID {
		t.Errorf("nginx pid %d -> %d", nginxPID, pid)
	}
	checkCatchAll(t, node.IP)

	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	// The failed run had already put our config back on disk; the next run
	// still owes nginx that reload.
	out = runSetup(t, bed, node)
	if want := fmt.Sprintf("nginx: reloaded (pid %d)", nginxPID); !strings.Contains(out, want) || lastLine(out) != "setup done: 1 change" {
		t.Errorf("run after the fix: want %q and 1 change", want)
	}
	if out := runSetup(t, bed, node); lastLine(out) != "setup done: nothing changed" {
		t.Errorf("second run after the fix ends with %q", lastLine(out))
	}
}

// fakeSystemctl stands in for systemctl on a node without systemd: it logs
// its calls and keeps each unit's enabled/active state in files.
const fakeSystemctl = `#!/bin/sh
dir=/srv/fake-systemd
echo "$*" >> $dir/calls
quiet=0 now=0
for a; do
	shift
	case $a in
	--quiet) quiet=1 ;;
	--now) now=1 ;;
	*) set -- "$@" "$a" ;;
	esac
done
cmd=$1 unit=$2
case $cmd in
is-enabled)
	state=$(cat $dir/$unit.enabled 2>/dev/null || echo disabled)
	[ $quiet = 1 ] || echo $state
	[ $state = enabled ] ;;
is-active) [ -e $dir/$unit.active ] ;;
enable) echo enabled > $dir/$unit.enabled; [ $now = 0 ] || touch $dir/$unit.active ;;
mask) echo masked > $dir/$unit.enabled; [ $now = 0 ] || rm -f $dir/$unit.active ;;
start) touch $dir/$unit.active ;;
reload | daemon-reload) ;;
*) echo "fake systemctl: unexpected $*" >&2; exit 1 ;;
esac
`

// The systemd branch, with a fake systemctl: what it starts, enables and
// reloads, and that a rerun only asks.
func testSystemd(t *testing.T, bed *testbed.Bed, node *testbed.Node) {
	fake := filepath.Join(node.Dir, "srv", "fake-systemd")
	if err := os.MkdirAll(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, "systemctl"), []byte(fakeSystemctl), 0o755); err != nil {
		t.Fatal(err)
	}
	execNode(t, bed, node, "mkdir", "-p", "/run/systemd/system")
	t.Cleanup(func() {
		// t.Context() is done by now.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := bed.Exec(ctx, node, "rm", "-rf", "/run/systemd"); err != nil {
			t.Error(err)
		}
	})
	env := "PATH=/srv/fake-systemd:" + strings.TrimPrefix(nodePath, "PATH=")
	calls := func() []string {
		data, err := os.ReadFile(filepath.Join(fake, "calls"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(fake, "calls")); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	expect := func(out string, got []string, wantOut, wantCalls, notCalls []string) {
		t.Helper()
		for _, w := range wantOut {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q", w)
			}
		}
		for _, w := range wantCalls {
			if !slices.Contains(got, w) {
				t.Errorf("systemctl %s was not called; calls: %q", w, got)
			}
		}
		for _, c := range got {
			for _, n := range notCalls {
				if strings.HasPrefix(c, n) {
					t.Errorf("unexpected systemctl %s", c)
				}
			}
		}
	}

	out := runSetup(t, bed, node, env)
	expect(out, calls(),
		[]string{"nginx: enabled", "gitreceive-emperor: enabled", "uwsgi-emperor: masked", "nginx: started", "emperor: started", "setup done: 5 changes"},
		[]string{"enable --quiet nginx", "enable --quiet gitreceive-emperor", "mask --now --quiet uwsgi-emperor", "start nginx", "start gitreceive-emperor"},
		[]string{"daemon-reload", "reload"})

	out = runSetup(t, bed, node, env)
	expect(out, calls(), []string{"setup done: nothing changed"}, nil,
		[]string{"enable", "mask", "start", "reload", "daemon-reload", "restart", "stop"})

	execNode(t, bed, node, "sh", "-c", `echo '# local edit' >> /etc/nginx/conf.d/gitreceive.conf &&
echo '# local edit' >> /etc/systemd/system/gitreceive-emperor.service`)
	out = runSetup(t, bed, node, env)
	expect(out, calls(),
		[]string{"updated /etc/systemd/system/gitreceive-emperor.service", "nginx: reloaded", "systemctl restart gitreceive-emperor"},
		[]string{"daemon-reload", "reload nginx"},
		[]string{"start", "restart", "enable", "mask"})
}
