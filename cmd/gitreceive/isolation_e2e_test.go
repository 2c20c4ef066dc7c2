//go:build e2e

package main_test

// Tenant isolation on the nodes (DESIGN.md decision 9): two apps of two
// deployers on two set-up test nodes. carol may deploy only blog; shop
// (alice's, every service) must stay out of blog's reach, through `run`
// and through blog's own web code, and keep serving through all of it.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
	"github.com/gitreceive/gitreceive/services"
)

// attackPy tries each attack it is given (JSON on stdin or in the query: kind -> targets) and
// answers kind target -> "ok..." or "denied: why". It runs both as a `run`
// script and inside blog's web app.
const attackPy = `import ctypes, json, os, signal, socket, sys

def _read(p):
    with open(p, "rb") as f:
        return len(f.read())

def _list(p):
    return len(os.listdir(p))

def _write(p):
    with open(p, "ab") as f:
        f.write(b"blog was here\n")

def _create(d):
    with open(os.path.join(d, "planted-by-blog"), "wb") as f:
        f.write(b"x")

def _rename(p):
    os.rename(p, p + ".moved")

def _unlink(p):
    os.unlink(p)

def _connect(p):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(p)
    s.close()

def _bind(p):
    s = socket.socket(socket.AF_UNIX)
    s.bind(p)
    s.close()

def _signal(pid):
    os.kill(int(pid), signal.SIGSTOP)
    os.kill(int(pid), signal.SIGCONT)

def _ptrace(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(16, int(pid), None, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    libc.ptrace(17, int(pid), None, None)

def _environ(pid):
    return _read("/proc/%s/environ" % pid)

def _seeuid(uid):
    seen = [p for p in os.listdir("/proc") if p.isdigit() and os.stat("/proc/" + p).st_uid == int(uid)]
    if not seen:
        raise PermissionError("no process of uid %s visible" % uid)
    return len(seen)

KINDS = {"read": _read, "list": _list, "write": _write, "create": _create, "rename": _rename, "unlink": _unlink,
         "connect": _connect, "bind": _bind, "signal": _signal, "ptrace": _ptrace, "environ": _environ, "seeuid": _seeuid}

def attack(plan):
    out = {}
    for kind, targets in sorted(plan.items()):
        for t in targets:
            try:
                r = KINDS[kind](t)
                out[kind + " " + str(t)] = "ok" + ("" if r is None else " " + str(r))
            except Exception as e:
                out[kind + " " + str(t)] = "denied: %s %s" % (type(e).__name__, e)
    return out

if __name__ == "__main__":
    print(json.dumps(attack(json.load(sys.stdin))))
`

// blogWSGI serves / and /attack?plan=JSON (the same attacks as the web
// app) and /hog (more memory than blog may have).
const blogWSGI = `import json, os, sys, urllib.parse
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "bin"))
import attack

def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/attack":
        plan = json.loads(urllib.parse.parse_qs(environ["QUERY_STRING"])["plan"][0])
        body = json.dumps(attack.attack(plan)).encode()
    elif path == "/hog":
        hog = [bytearray(1 << 20) for _ in range(400)]
        body = b"survived %d MB" % len(hog)
    else:
        body = b"blog is up"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
`

func TestTenantIsolation(t *testing.T) {
	f, bed := fanOutBed(t, "iso", "10.77.212.0/24", 2)
	carolKey := receivertest.NewKey(t, f.keysDir, "carol")
	receivertest.AddKey(t, bin, f.data, carolKey, "--apps", "blog")
	carol := receivertest.NewClient(t, f.srv.Server, carolKey)

	// shop: alice's, with every service.
	shopWork := exampleWorkTree(t, f.alice, "servicesapp")
	ini, err := os.ReadFile(filepath.Join(shopWork, "app.ini"))
	if err != nil {
		t.Fatal(err)
	}
	f.alice.Commit(t, shopWork, "shop", map[string]string{
		"app.ini":        strings.Replace(string(ini), "app_name = servicesapp", "app_name = shop", 1),
		"bin/sleeper.py": "import time\nprint('started', flush=True)\ntime.sleep(313)\n",
		"bin/secret.py":  "import os\nprint(open(os.environ['SILVER_SECRET_FILE']).read())\n",
	})
	f.alice.MustGit(t, shopWork, "push", f.alice.URL("shop"), "main")
	// blog: carol's, 64 MB at most.
	blogWork := carol.WorkTree(t, map[string]string{
		"app.ini":       "[production]\napp_name = blog\nrunner = wsgi.py\nmemory = 64M\nworkers = 1\n",
		"wsgi.py":       blogWSGI,
		"bin/attack.py": attackPy,
	})
	carol.MustGit(t, blogWork, "push", carol.URL("blog"), "main")

	const shopHost, blogHost = "shop.localhost", "blog.localhost"
	shopServes := func(when string) {
		t.Helper()
		for _, n := range bed.Nodes {
			if code, body := get(n, shopHost, "/"); code != 200 {
				t.Fatalf("%s: shop on %s answers %d %q", when, n.Name, code, body)
			}
		}
	}
	shopServes("after both deploys")

	// At the SSH door: carol reaches nothing of shop.
	for _, cmd := range [][]string{{"run", "shop", "secret.py"}, {"logs", "shop"}, {"config", "shop"}, {"destroy", "shop"}, {"backup", "shop"}} {
		if r := carol.SSH(t, "", nil, cmd...); r.Code == 0 || strings.Contains(r.Stdout, "hits") {
			t.Errorf("carol: %v: %s", cmd, r)
		}
	}

	node := bed.Nodes[0]
	exec1 := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := bed.Exec(ctx, node, args...)
		if err != nil {
			t.Fatalf("%v on %s: %v\n%s", args, node.Name, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	shopInst := services.Instance{App: "shop", Name: "production"}
	shopUser := shopInst.UnixUser()
	blogUser := services.Instance{App: "blog", Name: "production"}.UnixUser()
	shopUID := exec1("id", "-u", shopUser)
	if shopUser == blogUser || exec1("id", "-u", blogUser) == shopUID {
		t.Fatalf("shop and blog share a user: %s, %s", shopUser, blogUser)
	}
	// Each runs as its own user, without the other's group or any other.
	if r := carol.SSH(t, "", nil, "run", "blog", "id"); r.Code != 0 || !strings.Contains(r.Stdout, "("+blogUser+")") ||
		strings.Contains(r.Stdout, shopUser) || strings.Contains(r.Stdout, "www-data") {
		t.Fatalf("run blog id: %s", r)
	}
	inst := "/srv/gitreceive/apps/shop/production"
	files := services.Dir(services.Host{DataDir: "/var/lib/gitreceive"}, "files", shopInst)
	writable := services.Dir(services.Host{DataDir: "/var/lib/gitreceive"}, "writable_root", shopInst)
	logs := "/var/log/gitreceive/apps/shop/production"
	socket := "/run/gitreceive/sockets/" + agent.InstanceID("shop", "production") + ".v1.sock"
	exec1("sh", "-c", `echo shop-data > "$1/order.txt" && chown "$2:$2" "$1/order.txt"`, "sh", files, shopUser)

	// A `run` of shop's deployer is running: blog must not touch it either.
	sleeper := exec.Command("sh", "-c", f.alice.SSHCommand()+" -p "+f.srv.Port()+" git@127.0.0.1 run shop sleeper.py")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := sleeper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-sleeper.Process.Pid, syscall.SIGKILL); sleeper.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "started\n" {
		t.Fatalf("shop's sleeper said %q", line)
	}
	pids := strings.Fields(exec1("pgrep", "-u", shopUser))
	if len(pids) < 3 { // master, worker(s), the sleeper
		t.Fatalf("shop's processes on %s: %v", node.Name, pids)
	}

	plan := map[string][]string{
		"read": {inst + "/env", inst + "/secret", inst + "/run/v1.env", inst + "/releases/v1/wsgi.py", inst + "/releases/v1/app.ini",
			inst + "/current/wsgi.py", logs + "/app.log", files + "/order.txt", "/var/log/gitreceive/nginx/shop/production/access.log",
			"/var/log/gitreceive/nginx/shop/production/app.log",
			"/var/log/gitreceive/emperor.log"},
		"list": {inst, inst + "/tmp", inst + "/releases", logs, files, writable, "/srv/gitreceive/apps", "/srv/gitreceive/apps/shop",
			"/run/gitreceive/sockets", "/var/log/gitreceive/apps"},
		"write": {inst + "/secret", inst + "/env", inst + "/run/v1.env", logs + "/app.log", files + "/order.txt", inst + "/releases/v1/wsgi.py",
			"/var/log/gitreceive/nginx/shop/production/app.log"},
		"create":  {files, writable, inst + "/tmp", logs, inst + "/releases/v1", "/run/gitreceive/sockets"},
		"rename":  {socket, inst + "/current", inst + "/secret"},
		"unlink":  {socket, files + "/order.txt"},
		"connect": {socket},
		"bind":    {socket, "/run/gitreceive/sockets/blog.production.v9.sock"},
		"signal":  pids,
		"ptrace":  pids,
		"environ": pids,
		"seeuid":  {shopUID},
	}
	planJSON, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	check := func(how, out string) {
		t.Helper()
		var got map[string]string
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%s: the attack's answer %q: %v", how, out, err)
		}
		n := 0
		for _, targets := range plan {
			n += len(targets)
		}
		if len(got) != n {
			t.Errorf("%s: %d answers for %d attacks: %v", how, len(got), n, got)
		}
		var keys []string
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !strings.HasPrefix(got[k], "denied: ") {
				t.Errorf("%s: %s: %s", how, k, got[k])
			}
		}
	}
	// Through `run`, on each node.
	for _, n := range bed.Nodes {
		r := carol.SSH(t, string(planJSON), nil, "run", "blog", "--node", n.Name, "attack.py")
		if r.Code != 0 {
			t.Fatalf("run blog attack.py on %s: %s", n.Name, r)
		}
		if n == node {
			check("run on "+n.Name, strings.TrimSpace(r.Stdout))
		}
	}
	// Through blog's web code.
	code, body := get(node, blogHost, "/attack?plan="+url.QueryEscape(string(planJSON)))
	if code != 200 {
		t.Fatalf("blog /attack: %d %q", code, body)
	}
	check("blog's web app", body)

	// shop's data and processes are as they were, and it still serves.
	if got := exec1("cat", files+"/order.txt"); got != "shop-data" {
		t.Errorf("shop's order.txt now holds %q", got)
	}
	for _, p := range []string{files + "/planted-by-blog", writable + "/planted-by-blog", socket + ".moved"} {
		if out, err := bed.Exec(context.Background(), node, "test", "-e", p); err == nil {
			t.Errorf("%s exists after the attacks %s", p, out)
		}
	}
	for _, pid := range pids {
		if state := exec1("sh", "-c", "grep '^State:' /proc/$1/status || echo gone", "sh", pid); strings.Contains(state, "stopped") || strings.Contains(state, "tracing") {
			t.Errorf("shop's process %s: %s", pid, state)
		}
	}
	shopServes("after the attacks")
	if r := f.alice.SSH(t, "", nil, "run", "shop", "secret.py"); r.Code != 0 || len(strings.TrimSpace(r.Stdout)) != 64 {
		t.Errorf("shop's own run of secret.py: %s", r)
	}

	// A staging instance of blog is another tenant: it reads nothing of
	// blog's production either.
	carol.MustGit(t, blogWork, "push", carol.URL("blog"), "main:feature")
	prodEnv := map[string][]string{"read": {"/srv/gitreceive/apps/blog/production/env", "/srv/gitreceive/apps/blog/production/secret"}}
	prodJSON, _ := json.Marshal(prodEnv)
	if r := carol.SSH(t, string(prodJSON), nil, "run", "blog@feature", "--node", node.Name, "attack.py"); r.Code != 0 ||
		strings.Count(r.Stdout, `"denied: `) != 2 {
		t.Errorf("blog@feature reading blog's production env and secret: %s", r)
	}

	// blog's own temporary directory, in its instance.
	if r := carol.SSH(t, "", nil, "run", "blog", "printenv", "TMPDIR"); r.Stdout != "/srv/gitreceive/apps/blog/production/tmp\n" {
		t.Errorf("run blog printenv TMPDIR: %s", r)
	}

	// A memory hog in blog: its worker is killed (and respawned), shop
	// answers meanwhile, and `logs` says why.
	if code, body := get(node, blogHost, "/hog"); code == 200 && strings.Contains(body, "survived") {
		t.Errorf("blog's hog was not stopped at its 64 MB: %d %q", code, body)
	}
	shopServes("while blog's hog was killed")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, body := get(node, blogHost, "/"); code == 200 && body == "blog is up" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("blog did not come back after its hog was killed: %d %q", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := carol.SSH(t, "", nil, "logs", "blog", "--node", node.Name); !strings.Contains(r.Stdout+r.Stderr, "killed for going over its memory limit (64 MB)") {
		t.Errorf("logs blog does not say the hog was killed:\n%s", r)
	}

	// The limits are the instance's cgroup's.
	blogCgroup := agent.InstanceID("blog", "production")
	if out := exec1("sh", "-c", "cat /sys/fs/cgroup/memory/gitreceive/$1/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/gitreceive/$1/memory.max", "sh", blogCgroup); out != strconv.Itoa(64<<20) {
		t.Errorf("blog's cgroup memory limit: %s, want %d", out, 64<<20)
	}
	fmt.Fprintln(os.Stderr, "isolation: done") // marks the end in verbose logs
}

// legacyLayout turns a deployed instance back into what earlier versions
// left on a node: every app as the one user gitreceive-app, its vassal
// running as it, its files owned by it, its directories open, the sockets'
// directory the shared user's, and no user of its own.
const legacyLayout = `set -e
I=/srv/gitreceive/apps/$1/production
V=/etc/gitreceive/vassals/$1.production.v1.ini
S=/run/gitreceive/sockets/$1.production.v1.sock
L=/var/log/gitreceive/apps/$1/production
useradd --system --user-group --home-dir /srv/gitreceive --no-create-home --shell /usr/sbin/nologin gitreceive-app
sed -e 's/^uid = .*/uid = gitreceive-app/' -e 's/^gid = .*/gid = gitreceive-app/' -e '/^chown-socket/d' -e "s#^logto2 = .*#logto2 = $L/app.log#" -e '/gitreceive-limits/d' "$V" > /tmp/legacy.ini
rm "$V"
for i in $(seq 100); do pgrep -u "$2" >/dev/null || break; sleep 0.1; done
rm -f "$S"
userdel "$2"; groupdel "$2" 2>/dev/null || true
chown gitreceive-app:www-data /run/gitreceive/sockets; chmod 2750 /run/gitreceive/sockets
chown -R gitreceive-app:gitreceive-app "$I/env" "$I/secret" "$I/tmp" "$I/run/v1.env" "$L" "$3"
chmod 750 "$L" "$3"
chown root:root "$I" "$I/releases" "$I/releases/v1" "$I/run" "$I/run/v1.wsgi.py"
chmod 755 /srv/gitreceive/apps "/srv/gitreceive/apps/$1" "$I" "$I/releases" "$I/releases/v1" "$I/run"
chmod 644 "$I/run/v1.wsgi.py"
mv /tmp/legacy.ini "$V"
`

// A node set up by an earlier version: the next deploy moves the instance
// to its own user, closes its files, and the app keeps serving throughout.
func TestMigrationFromSharedUser(t *testing.T) {
	f, bed := fanOutBed(t, "mig", "10.77.213.0/24", 1)
	node := bed.Nodes[0]
	const host = "legacy.localhost"
	work := f.alice.WorkTree(t, receivertest.App("legacy", map[string]string{
		"app.ini": "[production]\napp_name = legacy\nrunner = app.py\nservice.files =\n",
		"app.py":  "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'legacy v1']\n",
	}))
	f.alice.MustGit(t, work, "push", f.alice.URL("legacy"), "main")
	inst := services.Instance{App: "legacy", Name: "production"}
	user := inst.UnixUser()
	files := services.Dir(services.Host{DataDir: "/var/lib/gitreceive"}, "files", inst)
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := bed.Exec(ctx, node, args...)
		return strings.TrimSpace(string(out)), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	must("sh", "-c", `echo kept > "$1/data.txt"`, "sh", files)
	must("sh", "-c", legacyLayout, "sh", "legacy", user, files)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, body := get(node, host, "/"); code == 200 && body == "legacy v1" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the legacy layout does not serve: %d %q\n%s", code, body, must("tail", "-n", "30", "/var/log/gitreceive/emperor.log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := must("pgrep", "-c", "-u", "gitreceive-app"); out == "0" {
		t.Fatalf("no vassal runs as gitreceive-app")
	}

	// Requests all through the deploy that migrates it.
	stop := make(chan struct{})
	failed := make(chan string, 1)
	go func() {
		var bad []string
		for {
			select {
			case <-stop:
				failed <- strings.Join(bad, "; ")
				return
			default:
			}
			if code, body := get(node, host, "/"); code != 200 || !strings.HasPrefix(body, "legacy v") {
				bad = append(bad, fmt.Sprintf("%d %q", code, body))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	f.alice.Commit(t, work, "v2", map[string]string{
		"app.py": "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'legacy v2']\n",
	})
	f.alice.MustGit(t, work, "push", f.alice.URL("legacy"), "main")
	close(stop)
	if bad := <-failed; bad != "" {
		t.Errorf("requests failed during the migrating deploy: %s", bad)
	}
	mustGet(t, node, host, "/", "legacy v2")

	// Nothing runs as the shared user any more; everything is the instance's.
	if out, _ := run("pgrep", "-a", "-u", "gitreceive-app"); out != "" {
		t.Errorf("still running as gitreceive-app: %s", out)
	}
	dir := "/srv/gitreceive/apps/legacy/production"
	for path, want := range map[string]string{
		dir:                           "750 root " + user,
		dir + "/env":                  "600 " + user + " " + user,
		dir + "/secret":               "600 " + user + " " + user,
		dir + "/releases":             "750 root " + user,
		dir + "/run":                  "750 root " + user,
		files:                         "700 " + user + " " + user,
		files + "/data.txt":           "644 " + user + " " + user,
		"/run/gitreceive/sockets":     "750 root www-data",
		"/srv/gitreceive/apps":        "711 root root",
		"/srv/gitreceive/apps/legacy": "711 root root",
		"/var/log/gitreceive/apps/legacy/production/app.log":  "640 " + user + " " + user,
		"/var/log/gitreceive/nginx/legacy/production/app.log": "660 root " + user,
	} {
		if got := must("stat", "-c", "%a %U %G", path); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	for _, p := range []string{dir + "/env", dir + "/secret", files + "/data.txt"} {
		if out, err := run("runuser", "-u", "gitreceive-app", "--", "cat", p); err == nil {
			t.Errorf("gitreceive-app still reads %s: %s", p, out)
		}
	}
}
