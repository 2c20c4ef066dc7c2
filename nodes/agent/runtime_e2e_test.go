//go:build e2e

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/agent/pysupport"
	serverfiles "github.com/gitreceive/gitreceive/server-files"
	"github.com/gitreceive/gitreceive/services"
)

// runtimeArgs are startRelease's (stopRelease's, demoteRelease's) arguments
// for the helper that runs them inside a test node.
type runtimeArgs struct {
	App      string
	Instance string
	N        int
	Spec     Spec
}

// runtimeResult is the helper's answer on stdout.
type runtimeResult struct {
	Out     string  `json:"out"`
	Error   string  `json:"error"`
	Seconds float64 `json:"seconds"`
}

// runtimeHelper is the test binary's "start"/"stop"/"demote" entry point
// (see TestMain): it runs on a test node, against the node's emperor, with
// SystemRuntime. It prints a runtimeResult; on failure the error also goes
// to stderr and the exit status is 1.
func runtimeHelper(helper, args string) int {
	var a runtimeArgs
	if err := json.Unmarshal([]byte(args), &a); err != nil {
		fmt.Fprintf(os.Stderr, "%s: arguments %q: %v\n", helper, args, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := SystemRuntime()
	var out bytes.Buffer
	started := time.Now()
	var err error
	switch helper {
	case "start":
		err = rt.instance(a.App, a.Instance).startRelease(ctx, a.N, a.Spec, &out)
	case "stop":
		err = rt.instance(a.App, a.Instance).stopRelease(ctx, a.N)
	case "demote":
		err = rt.instance(a.App, a.Instance).demoteRelease(ctx, a.N)
	}
	res := runtimeResult{Out: out.String(), Seconds: time.Since(started).Seconds()}
	if err != nil {
		res.Error = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// Where this test puts things inside its node (the node's /srv is
// NODE.Dir/srv on the host).
const (
	rtSetupDir   = "/srv/gitreceive-setup"
	rtHelperPath = "/srv/gitreceive-runtime.test"
)

// helper runs startRelease & co. inside the node.
func (n *testNode) helper(verb, app, instance string, v int, spec Spec) runtimeResult {
	n.t.Helper()
	data, err := json.Marshal(runtimeArgs{App: app, Instance: instance, N: v, Spec: spec})
	if err != nil {
		n.t.Fatal(err)
	}
	stdout, err := n.exec("env", testHelperEnv+"="+verb, testHelperArgsEnv+"="+string(data), rtHelperPath)
	var res runtimeResult
	if jerr := json.Unmarshal([]byte(stdout), &res); jerr != nil {
		n.t.Fatalf("%s %s/%s v%d: no result (%v): %v", verb, app, instance, v, jerr, err)
	}
	n.t.Logf("%s %s/%s v%d (%.2fs): error %q\n%s", verb, app, instance, v, res.Seconds, res.Error, res.Out)
	return res
}

func (n *testNode) mustStart(app, instance string, v int, spec Spec) runtimeResult {
	n.t.Helper()
	res := n.helper("start", app, instance, v, spec)
	if res.Error != "" {
		n.t.Fatalf("start %s/%s v%d: %s\n%s", app, instance, v, res.Error, res.Out)
	}
	return res
}

// get sends a GET straight to release v's socket, from the host.
func (n *testNode) get(app, instance string, v int, host, scriptName, path string, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return uwsgiGet(ctx, n.fs(n.rt.socketPath(app, instance, v)), host, scriptName, path)
}

func (n *testNode) mustGet(app, instance string, v int, host, scriptName, path string) []byte {
	n.t.Helper()
	status, body, err := n.get(app, instance, v, host, scriptName, path, 30*time.Second)
	if err != nil || status != 200 {
		n.t.Fatalf("GET %s%s from %s/%s v%d: %d %v\n%s", scriptName, path, app, instance, v, status, err, body)
	}
	return body
}

// writeRelease puts a release's files in place as `receive` would have:
// owned by root, below AppsDir.
func (n *testNode) writeRelease(app, instance string, v int, files map[string]file) string {
	n.t.Helper()
	dir := n.rt.releaseDir(app, instance, v)
	for name, f := range files {
		p := n.fs(filepath.Join(dir, name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			n.t.Fatal(err)
		}
		mode := f.mode
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(p, []byte(f.content), mode); err != nil {
			n.t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			n.t.Fatal(err)
		}
	}
	return dir
}

// stat is `stat -c FORMAT PATH` in the node (user and group names are the
// node's, not the host's).
// uid is the uid of APP/INSTANCE's own user.
func (n *testNode) uid(app, instance string) int {
	n.t.Helper()
	uid, err := strconv.Atoi(n.mustExec("id", "-u", services.Instance{App: app, Name: instance}.UnixUser()))
	if err != nil {
		n.t.Fatal(err)
	}
	return uid
}

func (n *testNode) stat(format, path string) string {
	n.t.Helper()
	return n.mustExec("stat", "-c", format, path)
}

// vassalProcesses counts the processes of a vassal (master and workers).
func (n *testNode) vassalProcesses(app, instance string, v int) int {
	n.t.Helper()
	out, _ := n.exec("pgrep", "-c", "-f", "--", "--ini "+regexp.QuoteMeta(filepath.Base(n.rt.vassalPath(app, instance, v)))+"$")
	c, _ := strconv.Atoi(strings.TrimSpace(out))
	return c
}

// expectStopped checks that nothing of release v is left running.
func (n *testNode) expectStopped(app, instance string, v int) {
	n.t.Helper()
	for _, p := range []string{n.rt.vassalPath(app, instance, v), n.rt.socketPath(app, instance, v)} {
		if _, err := os.Lstat(n.fs(p)); !errors.Is(err, fs.ErrNotExist) {
			n.t.Errorf("%s is still there (%v)", p, err)
		}
	}
	if c := n.vassalProcesses(app, instance, v); c != 0 {
		n.t.Errorf("%s/%s v%d still has %d processes", app, instance, v, c)
	}
	ids, err := emperorVassals(context.Background(), n.fs(n.rt.EmperorStats))
	if err != nil {
		n.t.Fatal(err)
	}
	for _, vs := range ids {
		if vs.ID == filepath.Base(n.rt.vassalPath(app, instance, v)) {
			n.t.Errorf("the emperor still lists %s", vs.ID)
		}
	}
}

// tricky env values: uWSGI's config would expand or trim each of them.
var trickyEnv = map[string]string{
	"CONFIG_TRICKY":   `100% %(_) %n %d $(HOME) @(/etc/hostname) "double" 'single' a=b=c ; # \ end`,
	"CONFIG_SPACES":   "  leading and trailing  ",
	"CONFIG_EMPTY":    "",
	"CONFIG_UNICODE":  "grüße ✓",
	"SILVER_APP_NAME": "probe",
}

// probeRunner is a WSGI app that reports what it was given.
const probeRunner = `import json
import os
import sys
import time

import probemod

PATHS = {"/fail": "500 Internal Server Error", "/missing": "404 Not Found"}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/sleep":
        time.sleep(10)
    if path == "/touch-temp":
        with open(os.path.join(os.environ["TEMP"], "left-over"), "w") as f:
            f.write("x")
    with open(os.environ["SILVER_SECRET_FILE"]) as f:
        secret = f.read()
    body = json.dumps({
        "env": dict(os.environ),
        "secret": secret,
        "temp": sorted(os.listdir(os.environ["TEMP"])),
        "uid": os.getuid(),
        "pid": os.getpid(),
        "probemod": probemod.VALUE,
        "first_paths": sys.path[:2],
        "script_name": environ.get("SCRIPT_NAME"),
        "path_info": path,
        "query": environ.get("QUERY_STRING"),
        "host": environ.get("HTTP_HOST"),
        "cwd": os.getcwd(),
    }).encode()
    start_response(PATHS.get(path, "200 OK"), [("Content-Type", "application/json")])
    return [body]
`

// probeRelease is the probe app as the builder leaves it: lib/python's .pth
// holds a path relative to itself.
func probeRelease(runner string) map[string]file {
	return map[string]file{
		"app/wsgi.py":          {content: runner},
		"lib/python/probe.pth": {content: "# rewritten by the receiver\n../../src\n"},
		"src/probemod.py":      {content: "VALUE = 'imported through probe.pth'\n"},
		"bin/fetch.sh": {mode: 0o755, content: `#!/bin/sh
echo "argc=$#"
for a in "$@"; do echo "arg=[$a]"; done
echo "uid=$(id -u) cwd=$(pwd)"
`},
		"bin/fetch.py": {content: `import json, os, sys
import probemod
print("py argv=" + json.dumps(sys.argv[1:]))
print("py env=" + json.dumps(dict(os.environ), sort_keys=True))
print("py probemod=" + probemod.VALUE)
`},
		"bin/fail.sh":  {mode: 0o755, content: "#!/bin/sh\necho 'going to fail' >&2\nexit 3\n"},
		"bin/plain.sh": {content: "#!/bin/sh\necho never\n"},
	}
}

func probeSpec(host, path string) Spec {
	env := map[string]string{}
	for k, v := range trickyEnv {
		env[k] = v
	}
	return Spec{Platform: "python", Runner: "app/wsgi.py", Locations: []Location{{Host: host, Path: path}}, Env: env}
}

// probeAnswer is what the probe app says.
type probeAnswer struct {
	Env        map[string]string `json:"env"`
	Secret     string            `json:"secret"`
	Temp       []string          `json:"temp"`
	UID        int               `json:"uid"`
	PID        int               `json:"pid"`
	Probemod   string            `json:"probemod"`
	FirstPaths []string          `json:"first_paths"`
	ScriptName string            `json:"script_name"`
	PathInfo   string            `json:"path_info"`
	Query      string            `json:"query"`
	Host       string            `json:"host"`
	Cwd        string            `json:"cwd"`
}

func parseProbe(t *testing.T, body []byte) probeAnswer {
	t.Helper()
	var a probeAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("probe answer %q: %v", body, err)
	}
	return a
}

func TestReleaseRuntimeOnTestNode(t *testing.T) {
	n := setupRuntimeNode(t, "rt", "10.77.241.0/24")

	// The sockets' directory as setup leaves it: root's (no app can rename
	// or replace a socket), nginx's group reaches the sockets, nobody else.
	if got := n.stat("%a %U %G", n.rt.SocketsDir); got != "750 root www-data" {
		t.Errorf("%s: %s, want 750 root www-data", n.rt.SocketsDir, got)
	}

	t.Run("python app", func(t *testing.T) {
		n.t = t
		testPythonApp(n)
	})
	t.Run("example djangoapp", func(t *testing.T) {
		n.t = t
		testExampleApp(n)
	})
	t.Run("php app", func(t *testing.T) {
		n.t = t
		testPHPApp(n)
	})
	t.Run("import error fails fast", func(t *testing.T) {
		n.t = t
		n.writeRelease("broken", "main", 1, map[string]file{
			"app.py": {content: "import os\n\nraise RuntimeError('boom at import')\n"},
		})
		spec := Spec{Platform: "python", Runner: "app.py", Locations: []Location{{Host: "broken.test"}}}
		res := n.helper("start", "broken", "main", 1, spec)
		if res.Error != "the app did not start: RuntimeError: boom at import" {
			t.Errorf("error %q, want the app did not start: RuntimeError: boom at import", res.Error)
		}
		if !strings.Contains(res.Out, "raise RuntimeError('boom at import')") || !strings.Contains(res.Out, "Traceback") {
			t.Errorf("output lacks the traceback:\n%s", res.Out)
		}
		if res.Seconds > 8 {
			t.Errorf("failing took %.1fs of a 30 s health check: not fast", res.Seconds)
		}
		n.expectStopped("broken", "main", 1)

		// A vassal that dies without uWSGI's words for it: the emperor's
		// respawn gives it away.
		n.writeRelease("broken", "exits", 1, map[string]file{"app.py": {content: "import os\n\nos._exit(3)\n"}})
		spec.Locations[0].Host = "exits.broken.test"
		res = n.helper("start", "broken", "exits", 1, spec)
		// (uWSGI's log master dies with it, and what it held is lost.)
		if !strings.HasPrefix(res.Error, "the app did not start: it exited; ") || res.Seconds > 8 {
			t.Errorf("error %q after %.1fs, want the app did not start: it exited; ... well under the 30 s timeout", res.Error, res.Seconds)
		}
		n.expectStopped("broken", "exits", 1)

		// What app.ini names and the release lacks is said before uWSGI runs.
		spec.Runner = "missing.py"
		if res := n.helper("start", "broken", "exits", 1, spec); res.Error != "runner missing.py is not a file in the release; fix app.ini's runner" {
			t.Errorf("missing runner: %q", res.Error)
		}
	})
	t.Run("health check answering 500", func(t *testing.T) {
		n.t = t
		n.writeRelease("probe", "h500", 1, probeRelease(probeRunner))
		spec := probeSpec("h500.probe.test", "")
		spec.HealthCheck = "/fail"
		// Long enough for a vassal that takes several seconds to come up on
		// a busy machine (the test runs beside other packages' node tests,
		// under -race) to answer at least once.
		spec.HealthCheckTimeout = 8
		res := n.helper("start", "probe", "h500", 1, spec)
		if res.Error != "health check GET /fail answered 500 for 8s" {
			t.Errorf("error %q, want health check GET /fail answered 500 for 8s", res.Error)
		}
		if res.Seconds < 8 || res.Seconds > 16 {
			t.Errorf("failing took %.1fs, want the 8 s health check and a stop", res.Seconds)
		}
		if !strings.Contains(res.Out, "GET /fail => generated") {
			t.Errorf("output lacks the app log's request lines:\n%s", res.Out)
		}
		if !strings.Contains(res.Out, "the last answer to GET /fail: 500, beginning:\n  {\"env\": {") {
			t.Errorf("output lacks the failing answer's body:\n%s", res.Out)
		}
		n.expectStopped("probe", "h500", 1)
	})
	t.Run("harakiri", func(t *testing.T) {
		n.t = t
		n.writeRelease("probe", "slow", 1, probeRelease(probeRunner))
		spec := probeSpec("slow.probe.test", "")
		spec.Harakiri = 2
		spec.Workers = 2
		n.mustStart("probe", "slow", 1, spec)
		type result struct {
			status int
			err    error
			took   time.Duration
		}
		done := make(chan result, 1)
		go func() {
			began := time.Now()
			status, _, err := n.get("probe", "slow", 1, "slow.probe.test", "", "/sleep", 9*time.Second)
			done <- result{status, err, time.Since(began)}
		}()
		time.Sleep(300 * time.Millisecond)
		// The other worker still answers while one is stuck.
		n.mustGet("probe", "slow", 1, "slow.probe.test", "", "/")
		r := <-done
		if (r.err == nil && r.status < 500) || r.took > 6*time.Second {
			t.Errorf("a request sleeping 10 s with harakiri 2: %d %v after %s, want an error or 5xx within ~5 s", r.status, r.err, r.took)
		}
		t.Logf("the stuck request: %d %v after %s", r.status, r.err, r.took.Round(time.Millisecond))
		n.mustGet("probe", "slow", 1, "slow.probe.test", "", "/")
		// Stopping right after a harakiri can catch a worker being
		// respawned, which ignores the emperor's stop: stopRelease kills.
		if res := n.helper("stop", "probe", "slow", 1, Spec{}); res.Error != "" {
			t.Errorf("stop: %s", res.Error)
		}
		n.expectStopped("probe", "slow", 1)
	})
	t.Run("idle stop", func(t *testing.T) {
		n.t = t
		n.writeRelease("probe", "idle", 1, probeRelease(probeRunner))
		spec := probeSpec("idle.probe.test", "")
		spec.IdleStop, spec.Workers = 1, 2
		n.mustStart("probe", "idle", 1, spec)
		n.mustGet("probe", "idle", 1, "idle.probe.test", "", "/")
		// Idle: the workers go, the master (and its socket) stays.
		deadline := time.Now().Add(15 * time.Second)
		for n.vassalProcesses("probe", "idle", 1) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("the workers are still running after 15 s idle (%d processes)", n.vassalProcesses("probe", "idle", 1))
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The next request starts them again and is answered.
		n.mustGet("probe", "idle", 1, "idle.probe.test", "", "/")
		if c := n.vassalProcesses("probe", "idle", 1); c < 2 {
			t.Errorf("%d processes after a request, want the master and workers", c)
		}
		if res := n.helper("stop", "probe", "idle", 1, Spec{}); res.Error != "" {
			t.Errorf("stop: %s", res.Error)
		}
		n.expectStopped("probe", "idle", 1)
	})
	t.Run("update_fetch answering 404", func(t *testing.T) {
		n.t = t
		n.writeRelease("probe", "f404", 1, probeRelease(probeRunner))
		spec := probeSpec("f404.probe.test", "")
		spec.UpdateFetch = []FetchStep{{URLPath: "/"}, {URLPath: "/missing"}}
		res := n.helper("start", "probe", "f404", 1, spec)
		if res.Error != "update_fetch GET /missing answered 404" {
			t.Errorf("error %q, want update_fetch GET /missing answered 404", res.Error)
		}
		if !strings.Contains(res.Out, "update_fetch / -> 200") || !strings.Contains(res.Out, "update_fetch /missing -> 404") {
			t.Errorf("output lacks the update_fetch lines:\n%s", res.Out)
		}
		n.expectStopped("probe", "f404", 1)
	})
	t.Run("update_fetch scripts", func(t *testing.T) {
		n.t = t
		testFetchScripts(n)
	})
	t.Run("demote", func(t *testing.T) {
		n.t = t
		testDemote(n)
	})
}

// requireRuntimeStack skips (fails with CI=true) without the node stack
// on the host: nodes see the host's /usr beneath their overlays.
func requireRuntimeStack(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/usr/sbin/nginx", "/usr/bin/uwsgi", "/usr/bin/python3", "/usr/bin/php",
		"/usr/lib/uwsgi/plugins/python3_plugin.so", "/usr/lib/uwsgi/plugins/php_plugin.so"} {
		if _, err := os.Stat(p); err != nil {
			msg := fmt.Sprintf("needs %s on the host: apt-get install %s php-cli", p, strings.Join(serverfiles.Stack, " "))
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s (CI=true, so not skipping)", msg)
			}
			t.Skip(msg)
		}
	}
}

func testPythonApp(n *testNode) {
	t := n.t
	rel := n.writeRelease("probe", "main", 1, probeRelease(probeRunner))
	spec := probeSpec("probe.test", "/sub")
	res := n.mustStart("probe", "main", 1, spec)
	if !regexp.MustCompile(`(?m)^health check GET / -> 200 \(\d+\.\d\ds\)$`).MatchString(res.Out) {
		t.Errorf("output lacks the health check line:\n%s", res.Out)
	}

	a := parseProbe(t, n.mustGet("probe", "main", 1, "probe.test", "/sub", "/hello%20there?x=1&y=%25"))
	inst := n.rt.instanceDir("probe", "main")
	user := services.Instance{App: "probe", Name: "main"}.UnixUser()
	appUID := n.uid("probe", "main")
	want := map[string]string{
		"TEMP":               filepath.Join(inst, "tmp"),
		"TMPDIR":             filepath.Join(inst, "tmp"),
		"SILVER_LOGS":        n.rt.instanceLogsDir("probe", "main"),
		"SILVER_SECRET_FILE": filepath.Join(inst, "secret"),
		"PATH":               filepath.Join(rel, "bin") + ":/usr/local/bin:/usr/bin:/bin",
		// Every Python process of the app sees the release (pysupport).
		"PYTHONPATH":        n.rt.PythonDir,
		pysupport.AppDirEnv: rel,
	}
	for k, v := range trickyEnv {
		want[k] = v
	}
	for k, v := range want {
		if got, ok := a.Env[k]; !ok || got != v {
			t.Errorf("app's %s = %q (set: %v), want %q", k, got, ok, v)
		}
	}
	// Over the vassal's environment, which is the emperor's clean one
	// (nothing of the setup script's: HOME, SERVERROOT, ...).
	for k := range a.Env {
		if _, ok := want[k]; !ok && !strings.HasPrefix(k, "UWSGI_") && k != "LANG" {
			t.Errorf("app's environment has %s, which nobody set", k)
		}
	}
	secret, err := os.ReadFile(n.fs(filepath.Join(inst, "secret")))
	if err != nil {
		t.Fatal(err)
	}
	if a.Secret != string(secret) || !regexp.MustCompile(`^[0-9a-f]{64}$`).Match(secret) {
		t.Errorf("app read secret %q, the file holds %q; want the same 64 hex digits", a.Secret, secret)
	}
	if a.UID != appUID || a.Probemod != "imported through probe.pth" || fmt.Sprint(a.FirstPaths) != fmt.Sprint([]string{filepath.Join(rel, "lib", "python"), filepath.Join(rel, "src")}) ||
		a.ScriptName != "/sub" || a.PathInfo != "/hello there" || a.Query != "x=1&y=%25" || a.Host != "probe.test" || a.Cwd != rel {
		t.Errorf("app saw %+v", a)
	}
	// The worker and its master run as the instance's user, with
	// no_new_privs, no supplementary group but its own, in its cgroup.
	for _, pid := range []string{strconv.Itoa(a.PID), n.mustExec("ps", "-o", "ppid=", "-p", strconv.Itoa(a.PID))} {
		pid = strings.TrimSpace(pid)
		if got := n.stat("%U", "/proc/"+pid); got != user {
			t.Errorf("process %s runs as %s, want %s", pid, got, user)
		}
		status := n.mustExec("cat", "/proc/"+pid+"/status")
		for _, want := range []string{"NoNewPrivs:\t1", fmt.Sprintf("Groups:\t%d", appUID)} {
			if !strings.Contains(status, want+"\n") && !strings.Contains(status, want+" \n") {
				t.Errorf("process %s: /proc/PID/status lacks %q:\n%s", pid, want, status)
			}
		}
		if cg := n.mustExec("cat", "/proc/"+pid+"/cgroup"); !strings.Contains(cg, "/gitreceive/"+InstanceID("probe", "main")) {
			t.Errorf("process %s is not in the instance's cgroup:\n%s", pid, cg)
		}
	}

	// The instance's files.
	for path, want := range map[string]string{
		filepath.Dir(inst):                                  "711 root root",
		inst:                                                "750 root " + user,
		filepath.Join(inst, "releases"):                     "750 root " + user,
		rel:                                                 "750 root " + user,
		filepath.Join(inst, "env"):                          "600 " + user + " " + user,
		filepath.Join(inst, "secret"):                       "600 " + user + " " + user,
		filepath.Join(inst, "tmp"):                          "700 " + user + " " + user,
		n.rt.instanceLogsDir("probe", "main"):               "700 " + user + " " + user,
		n.rt.socketPath("probe", "main", 1):                 "660 " + user + " www-data",
		n.rt.vassalPath("probe", "main", 1):                 "644 root root",
		filepath.Join(inst, "run"):                          "750 root " + user,
		filepath.Join(inst, "run", "v1.env"):                "600 " + user + " " + user,
		filepath.Join(inst, "run", "v1.wsgi.py"):            "640 root " + user,
		n.rt.instanceNginxLogsDir("probe", "main"):          "750 root " + user,
		n.rt.instance("probe", "main").uwsgiLogPath():       "660 root " + user,
		filepath.Dir(n.rt.instanceLogsDir("probe", "main")): "711 root root",
	} {
		format := "%a %U %G"
		if got := n.stat(format, path); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	envFile, err := os.ReadFile(n.fs(filepath.Join(inst, "env")))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := parseEnvFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed) != len(want) {
		t.Errorf("env file has %d variables, want %d", len(parsed), len(want))
	}
	vassal, err := os.ReadFile(n.fs(n.rt.vassalPath("probe", "main", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(vassal, []byte("leading and trailing")) || bytes.Contains(vassal, []byte("double")) {
		t.Errorf("the vassal file holds env values:\n%s", vassal)
	}

	// A retry of the same release restarts it: new processes, TEMP
	// emptied, the secret kept.
	n.mustGet("probe", "main", 1, "probe.test", "/sub", "/touch-temp")
	if a := parseProbe(t, n.mustGet("probe", "main", 1, "probe.test", "/sub", "/")); len(a.Temp) != 1 {
		t.Errorf("TEMP holds %q after /touch-temp", a.Temp)
	}
	n.mustStart("probe", "main", 1, spec)
	b := parseProbe(t, n.mustGet("probe", "main", 1, "probe.test", "/sub", "/"))
	if b.PID == a.PID || len(b.Temp) != 0 || b.Secret != a.Secret {
		t.Errorf("after a second start: pid %d -> %d, TEMP %q, secret kept %v", a.PID, b.PID, b.Temp, b.Secret == a.Secret)
	}

	// Stop: the vassal, its socket and its processes go; a second stop is
	// no error.
	if res := n.helper("stop", "probe", "main", 1, Spec{}); res.Error != "" {
		t.Fatalf("stop: %s", res.Error)
	}
	n.expectStopped("probe", "main", 1)
	for _, p := range []string{"v1.env", "v1.wsgi.py"} {
		if _, err := os.Lstat(n.fs(filepath.Join(inst, "run", p))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("run/%s left after stop (%v)", p, err)
		}
	}
	if res := n.helper("stop", "probe", "main", 1, Spec{}); res.Error != "" {
		t.Errorf("second stop: %s", res.Error)
	}
}

// The example app, laid out as the builder leaves it: lib/python's .pth
// files rewritten to paths relative to themselves.
func testExampleApp(n *testNode) {
	t := n.t
	src := filepath.Join("..", "..", "examples", "djangoapp")
	dst := n.fs(n.rt.releaseDir("sampleapp", "main", 1))
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if filepath.Dir(rel) == filepath.Join("lib", "python") {
			// What builder/pthfix does for this tree.
			data = bytes.ReplaceAll(data, []byte("/home/alice/sampleapp/"), []byte("../../"))
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{
		Platform: "python", Runner: "src/sampleapp/wsgi.py", HealthCheck: "/health",
		Locations: []Location{{Host: "sampleapp.test"}},
		Env:       map[string]string{"CONFIG_GREETING": "hello from sampleapp", "SILVER_APP_NAME": "sampleapp"},
	}
	n.mustStart("sampleapp", "main", 1, spec)
	body := n.mustGet("sampleapp", "main", 1, "sampleapp.test", "", "/")
	if !strings.Contains(string(body), "hello from sampleapp") || !strings.Contains(string(body), "tinylib 1.0") {
		t.Errorf("GET / answered %q", body)
	}
	n.helper("stop", "sampleapp", "main", 1, Spec{})
}

func testPHPApp(n *testNode) {
	t := n.t
	// '%' and '.' in the instance name reach the vassal file in paths.
	const app, inst = "phpapp", "feat%41.x"
	front := `<?php
header('Content-Type: application/json');
echo json_encode([
    'script' => 'front',
    'tricky_getenv' => getenv('CONFIG_TRICKY'),
    'tricky_server' => $_SERVER['CONFIG_TRICKY'] ?? null,
    'spaces' => getenv('CONFIG_SPACES'),
    'empty' => getenv('CONFIG_EMPTY'),
    'secret_readable' => is_readable(getenv('SILVER_SECRET_FILE')),
    'request_uri' => $_SERVER['REQUEST_URI'],
    'host' => $_SERVER['HTTP_HOST'],
]);
`
	n.writeRelease(app, inst, 1, map[string]file{
		"public/index.php": {content: front},
		"public/other.php": {content: "<?php echo 'other ' . getenv('SILVER_APP_NAME');\n"},
		"public/data.txt":  {content: "not for PHP\n"},
		"lib/secret.php":   {content: "<?php echo 'outside the docroot';\n"},
	})
	spec := Spec{Platform: "php", Runner: "public/index.php", PHPRoot: "public", Locations: []Location{{Host: "php.test"}}, Env: trickyEnv}
	n.mustStart(app, inst, 1, spec)

	var got struct {
		Script         string `json:"script"`
		TrickyGetenv   string `json:"tricky_getenv"`
		TrickyServer   string `json:"tricky_server"`
		Spaces         string `json:"spaces"`
		Empty          string `json:"empty"`
		SecretReadable bool   `json:"secret_readable"`
		RequestURI     string `json:"request_uri"`
		Host           string `json:"host"`
	}
	for _, path := range []string{"/", "/some/route?q=1"} {
		body := n.mustGet(app, inst, 1, "php.test", "", path)
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("GET %s: %q: %v", path, body, err)
		}
		want := trickyEnv["CONFIG_TRICKY"]
		if got.Script != "front" || got.TrickyGetenv != want || got.TrickyServer != want || got.Spaces != trickyEnv["CONFIG_SPACES"] ||
			got.Empty != "" || !got.SecretReadable || got.RequestURI != path || got.Host != "php.test" {
			t.Errorf("GET %s: %+v", path, got)
		}
	}
	if body := n.mustGet(app, inst, 1, "php.test", "", "/other.php"); string(body) != "other probe" {
		t.Errorf("GET /other.php: %q", body)
	}
	// Only .php runs; nothing outside the docroot is reachable.
	if status, body, err := n.get(app, inst, 1, "php.test", "", "/data.txt", 10*time.Second); err != nil || status != 403 {
		t.Errorf("GET /data.txt: %d %q %v, want 403", status, body, err)
	}
	if status, body, err := n.get(app, inst, 1, "php.test", "", "/../lib/secret.php", 10*time.Second); err != nil || strings.Contains(string(body), "outside") {
		t.Errorf("GET /../lib/secret.php: %d %q %v, want it refused", status, body, err)
	}
	n.helper("stop", app, inst, 1, Spec{})
	n.expectStopped(app, inst, 1)
}

func testFetchScripts(n *testNode) {
	t := n.t
	rel := n.writeRelease("probe", "fetch", 1, probeRelease(probeRunner))
	spec := probeSpec("fetch.probe.test", "")
	args := []string{"a b", "  c  ", "$HOME", "%n", `"q"`}
	spec.UpdateFetch = []FetchStep{
		{URLPath: "/"},
		{Script: "bin/fetch.sh", Args: args},
		{Script: "bin/fetch.py", Args: []string{"x y"}},
	}
	res := n.mustStart("probe", "fetch", 1, spec)
	appUID := n.uid("probe", "fetch")
	wantLines := []string{"update_fetch / -> 200", "  argc=5", "  arg=[a b]", "  arg=[  c  ]", "  arg=[$HOME]", "  arg=[%n]", `  arg=["q"]`,
		fmt.Sprintf("  uid=%d cwd=%s", appUID, rel), "update_fetch script bin/fetch.sh: ok", `  py argv=["x y"]`,
		"  py probemod=imported through probe.pth", "update_fetch script bin/fetch.py: ok"}
	for _, w := range wantLines {
		if !strings.Contains(res.Out, w+"\n") && !strings.Contains(res.Out, w+" (") {
			t.Errorf("output lacks %q", w)
		}
	}
	// The script's environment is exactly the env file's.
	m := regexp.MustCompile(`(?m)^  py env=(.*)$`).FindStringSubmatch(res.Out)
	if m == nil {
		t.Fatalf("no py env line")
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(m[1]), &env); err != nil {
		t.Fatal(err)
	}
	envFile, err := os.ReadFile(n.fs(filepath.Join(n.rt.instanceDir("probe", "fetch"), "env")))
	if err != nil {
		t.Fatal(err)
	}
	lines, _ := parseEnvFile(envFile)
	want := map[string]string{}
	for _, l := range lines {
		k, v, _ := strings.Cut(l, "=")
		want[k] = v
	}
	delete(env, "LC_CTYPE") // python3 sets it itself (PEP 538) when LANG is unset
	if fmt.Sprint(env) != fmt.Sprint(want) {
		t.Errorf("script's environment:\n%v\nwant the env file's:\n%v", env, want)
	}
	n.helper("stop", "probe", "fetch", 1, Spec{})

	for _, c := range []struct {
		script, want string
	}{
		{"bin/fail.sh", "update_fetch script bin/fail.sh exited with status 3"},
		{"bin/plain.sh", "update_fetch script bin/plain.sh is not executable: chmod +x it in the repository, or name it .py or .php"},
	} {
		n.writeRelease("probe", "fetchfail", 1, probeRelease(probeRunner))
		spec := probeSpec("fetchfail.probe.test", "")
		spec.UpdateFetch = []FetchStep{{Script: c.script}}
		res := n.helper("start", "probe", "fetchfail", 1, spec)
		if res.Error != c.want {
			t.Errorf("%s: error %q, want %q", c.script, res.Error, c.want)
		}
		n.expectStopped("probe", "fetchfail", 1)
	}
}

func testDemote(n *testNode) {
	t := n.t
	n.writeRelease("probe", "demo", 1, probeRelease(probeRunner))
	spec := probeSpec("demo.probe.test", "")
	n.mustStart("probe", "demo", 1, spec)
	if c := n.vassalProcesses("probe", "demo", 1); c != 3 {
		t.Errorf("a started release has %d processes, want a master and 2 workers", c)
	}
	if res := n.helper("demote", "probe", "demo", 1, Spec{}); res.Error != "" {
		t.Fatalf("demote: %s", res.Error)
	}
	vassal, err := os.ReadFile(n.fs(n.rt.vassalPath("probe", "demo", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(vassal, []byte("\ncheap = true\n")) {
		t.Errorf("demoted vassal file:\n%s", vassal)
	}
	// The emperor reloads it: the master alone, no worker until a request.
	deadline := time.Now().Add(15 * time.Second)
	for n.vassalProcesses("probe", "demo", 1) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the demoted release still has %d processes after 15 s, want only its master", n.vassalProcesses("probe", "demo", 1))
		}
		time.Sleep(100 * time.Millisecond)
	}
	began := time.Now()
	a := parseProbe(t, n.mustGet("probe", "demo", 1, "demo.probe.test", "", "/"))
	t.Logf("first request to the demoted release: %s", time.Since(began).Round(time.Millisecond))
	if a.Env["CONFIG_TRICKY"] != trickyEnv["CONFIG_TRICKY"] {
		t.Errorf("demoted release's CONFIG_TRICKY = %q", a.Env["CONFIG_TRICKY"])
	}
	if c := n.vassalProcesses("probe", "demo", 1); c != 2 {
		t.Errorf("after a request the demoted release has %d processes, want its master and one worker", c)
	}
	// Demoting again changes nothing; a release that does not run is fine.
	if res := n.helper("demote", "probe", "demo", 1, Spec{}); res.Error != "" {
		t.Errorf("second demote: %s", res.Error)
	}
	if res := n.helper("demote", "probe", "demo", 7, Spec{}); res.Error != "" {
		t.Errorf("demote of a release that does not run: %s", res.Error)
	}
	n.helper("stop", "probe", "demo", 1, Spec{})
	n.expectStopped("probe", "demo", 1)
}
