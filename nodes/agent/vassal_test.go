package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/agent/pysupport"
)

// envValues are values uWSGI's configuration would mangle: each must
// arrive exactly.
var envValues = map[string]string{
	"PERCENT":  "100% %(_) %n %d %% %",
	"DOLLAR":   "$(HOME) ${HOME} $HOME @(/etc/hostname)",
	"QUOTES":   `"double" 'single' \backslash\ `,
	"EQUALS":   "a=b==c=",
	"SPACES":   "  leading and trailing  ",
	"EMPTY":    "",
	"COMMENT":  "; not a comment # nor this",
	"UNICODE":  "grüße ✓",
	"TABS":     "\tx\t",
	"SEMICOLN": "x;y",
}

func TestEnvFileRoundTrip(t *testing.T) {
	data, err := formatEnvFile(envValues)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := parseEnvFile(data)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var keys []string
	for _, l := range lines {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
		keys = append(keys, k)
	}
	if fmt.Sprint(got) != fmt.Sprint(envValues) {
		t.Errorf("round trip:\n%q\nwant\n%q", got, envValues)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Errorf("keys not sorted: %q", keys)
		}
	}

	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"A": "x\ny"}, "one line"},
		{map[string]string{"A": "x\ry"}, "one line"},
		{map[string]string{"A": "x\x00y"}, "one line"},
		{map[string]string{"a": "lower"}, "not a variable name"},
		{map[string]string{"A=B": "x"}, "not a variable name"},
		{map[string]string{"": "x"}, "not a variable name"},
	} {
		if _, err := formatEnvFile(c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error saying %q", c.env, err, c.want)
		}
	}
	for _, bad := range []string{"NOEQUALS\n", "lower=x\n", "=x\n"} {
		if _, err := parseEnvFile([]byte(bad)); err == nil {
			t.Errorf("parse %q: no error", bad)
		}
	}
}

func testVassalConfig(platform, instance string) vassalConfig {
	base := "/srv/gitreceive/apps/shop/" + instance
	c := vassalConfig{
		App: "shop", Instance: instance, N: 3,
		ReleaseDir: base + "/releases/v3",
		Socket:     "/run/gitreceive/sockets/" + InstanceID("shop", instance) + ".v3.sock",
		LogFile:    "/var/log/gitreceive/nginx/shop/" + instance + "/app.log",
		UID:        999, GID: 995, NginxGID: 33,
	}
	switch platform {
	case "python":
		c.Spec = Spec{Platform: "python", Runner: "src/shop/wsgi.py", Locations: []Location{{Host: "shop.test"}}}.WithDefaults()
		c.Bootstrap = base + "/run/v3.wsgi.py"
	case "php":
		c.Spec = Spec{Platform: "php", Runner: "public/index.php", PHPRoot: "public", Locations: []Location{{Host: "shop.test"}}}.WithDefaults()
		c.Bootstrap = base + "/run/v3.env.php"
	}
	return c
}

// iniOptions parses a vassal file's option lines (comments skipped), with
// uWSGI's '%%' turned back into '%'; any other '%' is an error.
func iniOptions(t *testing.T, ini string) map[string][]string {
	t.Helper()
	opts := map[string][]string{}
	section := ""
	for i, line := range strings.Split(ini, "\n") {
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			section = line
			continue
		}
		if section != "[uwsgi]" {
			t.Fatalf("line %d outside [uwsgi]: %q", i+1, line)
		}
		k, v, ok := strings.Cut(line, " = ")
		if !ok {
			t.Fatalf("line %d is not KEY = VALUE: %q", i+1, line)
		}
		if rest := strings.ReplaceAll(v, "%%", ""); strings.Contains(rest, "%") || strings.Contains(v, "$(") || strings.Contains(v, "@(") {
			t.Errorf("line %d: %q would be expanded by uWSGI", i+1, line)
		}
		opts[k] = append(opts[k], strings.ReplaceAll(v, "%%", "%"))
	}
	return opts
}

func TestVassalINIIdle(t *testing.T) {
	c := testVassalConfig("python", "branch-x")
	c.Spec.IdleStop = 1800
	ini, err := vassalINI(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := iniOptions(t, ini)["idle"]; len(got) != 1 || got[0] != "1800" {
		t.Fatalf("idle = %q, want 1800", got)
	}
}

func TestVassalINI(t *testing.T) {
	for _, c := range []struct {
		name     string
		platform string
		instance string
		want     map[string]string // option -> its (last) value
		absent   []string
	}{
		{"python", "python", "main", map[string]string{
			"strict": "true", "plugins": "python3", "uid": "999", "gid": "995",
			"chdir": "/srv/gitreceive/apps/shop/main/releases/v3", "master": "true",
			"processes": "2", "harakiri": "60", "max-requests": "5000", "reload-on-rss": "512",
			"need-app": "true", "env": "LANG=C.UTF-8", "socket": "/run/gitreceive/sockets/shop.main.v3.sock", "chown-socket": "999:33", "chmod-socket": "660",
			"logto2":     "/var/log/gitreceive/nginx/shop/main/app.log",
			"log-prefix": "[v3]", "wsgi-file": "/srv/gitreceive/apps/shop/main/run/v3.wsgi.py", "callable": "application",
		}, []string{"shared-socket", "log-maxsize", "vacuum", "logto", "for-readline", "php-docroot", "idle"}},
		{"python, '%' in the instance", "python", "feat%41.x", map[string]string{
			"chdir":  "/srv/gitreceive/apps/shop/feat%41.x/releases/v3",
			"logto2": "/var/log/gitreceive/nginx/shop/feat%41.x/app.log",
		}, nil},
		{"php", "php", "main", map[string]string{
			"plugins": "0:php", "php-docroot": "/srv/gitreceive/apps/shop/main/releases/v3/public",
			"php-allowed-docroot": "/srv/gitreceive/apps/shop/main/releases/v3/public",
			"php-allowed-ext":     ".php", "php-index": "index.php",
			"php-fallback":    "/srv/gitreceive/apps/shop/main/releases/v3/public/index.php",
			"php-exec-before": "require '/srv/gitreceive/apps/shop/main/run/v3.env.php';",
		}, []string{"need-app", "wsgi-file", "for-readline"}},
		{"php, '%' in the instance", "php", "a%b", map[string]string{
			"php-exec-before": "require '/srv/gitreceive/apps/shop/a%b/run/v3.env.php';",
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			ini, err := vassalINI(testVassalConfig(c.platform, c.instance))
			if err != nil {
				t.Fatal(err)
			}
			opts := iniOptions(t, ini)
			for k, want := range c.want {
				if got := opts[k]; len(got) == 0 || got[len(got)-1] != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			for _, k := range c.absent {
				if _, ok := opts[k]; ok {
					t.Errorf("%s is set: %q", k, opts[k])
				}
			}
			if !strings.HasPrefix(ini, ";") || !strings.Contains(ini, "\n[uwsgi]\n") {
				t.Errorf("no header comment or section:\n%s", ini)
			}
		})
	}

	// A runner outside php_root is allowed by its own path; a runner in the
	// document root that is not index.php is an index too.
	c := testVassalConfig("php", "main")
	c.Spec.PHPRoot, c.Spec.Runner = "web", "app/front.php"
	opts := iniOptions(t, mustINI(t, c))
	if got := opts["php-allowed-docroot"]; len(got) != 2 || got[1] != c.ReleaseDir+"/app/front.php" {
		t.Errorf("php-allowed-docroot = %q", got)
	}
	c.Spec.PHPRoot, c.Spec.Runner = "", "app.php"
	opts = iniOptions(t, mustINI(t, c))
	if got := opts["php-index"]; len(got) != 2 || got[1] != "app.php" || opts["php-docroot"][0] != c.ReleaseDir {
		t.Errorf("php-index = %q, php-docroot = %q", got, opts["php-docroot"])
	}

	// A socket path longer than sun_path would fail at bind, in the log.
	c = testVassalConfig("python", "main")
	c.Socket = "/run/gitreceive/sockets/" + strings.Repeat("x", 80) + ".v3.sock"
	if _, err := vassalINI(c); err == nil || !strings.Contains(err.Error(), "longer than the 107 bytes") {
		t.Errorf("long socket path: %v", err)
	}

	// Paths that cannot be written safely are refused, not escaped.
	for _, bad := range []string{"/srv/a b", "/srv/$(HOME)", "/srv/@(x)", "/srv/a\nchdir = /", "relative", "/srv/a;b", "/srv/é"} {
		c := testVassalConfig("python", "main")
		c.ReleaseDir = bad
		if _, err := vassalINI(c); err == nil {
			t.Errorf("release dir %q was written into the vassal file", bad)
		}
	}
}

func mustINI(t *testing.T, c vassalConfig) string {
	t.Helper()
	ini, err := vassalINI(c)
	if err != nil {
		t.Fatal(err)
	}
	return ini
}

func TestDemoteBlock(t *testing.T) {
	ini := mustINI(t, testVassalConfig("python", "main")) + demoteBlock
	opts := iniOptions(t, ini)
	if p := opts["processes"]; p[len(p)-1] != "1" || opts["cheap"][0] != "true" || opts["idle"][0] != "300" {
		t.Errorf("demoted: processes %q cheap %q idle %q", p, opts["cheap"], opts["idle"])
	}
	if !strings.Contains(ini, demoteMarker) {
		t.Errorf("no marker")
	}
}

// The bootstraps, run by the real interpreters on this machine: the env
// file's values arrive exactly, and the python one processes a .pth with a
// path relative to itself.
func TestPythonBootstrap(t *testing.T) {
	python := requireTool(t, "python3")
	dir := t.TempDir()
	rel := filepath.Join(dir, "releases", "v1")
	for name, content := range map[string]string{
		"lib/python/x.pth": "# comment\n../../src\nimport os; os.environ['PTH_IMPORT'] = 'ran'\n",
		// Imported once the app's environment is loaded, as Silver Lining did.
		"lib/python/silvercustomize.py": "import os\nos.environ['SILVERCUSTOMIZE'] = os.environ.get('EQUALS', 'no env yet')\n",
		"src/helper.py":                 "WHERE = 'src via x.pth'\n",
		"app/wsgi.py":                   "import helper\n\ndef app(environ, start_response):\n    return [helper.WHERE.encode()]\n",
		"app/wsgi_noapp.py":             "x = 1\n",
		"app/wsgi_failing.py":           "raise ValueError('nope')\n",
	} {
		writeTestFile(t, filepath.Join(rel, name), content)
	}
	envFile := filepath.Join(dir, "run", "v1.env")
	data, err := formatEnvFile(envValues)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, envFile, string(data))

	support := filepath.Join(dir, "python-support")
	if err := pysupport.Install(support); err != nil {
		t.Fatal(err)
	}
	run := func(runner, callable string) (string, error) {
		c := testVassalConfig("python", "main")
		c.ReleaseDir, c.Spec.Runner, c.Spec.Callable, c.PythonDir = rel, runner, callable, support
		boot, err := pythonBootstrap(c, envFile)
		if err != nil {
			t.Fatal(err)
		}
		bootFile := filepath.Join(dir, "run", "v1.wsgi.py")
		writeTestFile(t, bootFile, string(boot))
		check := `import json, os, runpy, sys
g = runpy.run_path(sys.argv[1])
body = b"".join(g["application"]({}, None)).decode()
print(json.dumps({"env": dict(os.environ), "body": body, "path": sys.path[:2]}))
`
		cmd := exec.Command(python, "-c", check, bootFile)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "PERCENT=the emperor's", "UWSGI_RELOADS=1"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run("app/wsgi.py", "app")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got struct {
		Env  map[string]string
		Body string
		Path []string
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	for k, v := range envValues {
		if got.Env[k] != v {
			t.Errorf("%s = %q, want %q", k, got.Env[k], v)
		}
	}
	// The env file is laid over the vassal's environment.
	if got.Env["UWSGI_RELOADS"] != "1" || got.Env["LANG"] != "C.UTF-8" || got.Env["PTH_IMPORT"] != "ran" {
		t.Errorf("UWSGI_RELOADS %q LANG %q (the vassal's stay), PTH_IMPORT %q (.pth import lines run)", got.Env["UWSGI_RELOADS"], got.Env["LANG"], got.Env["PTH_IMPORT"])
	}
	if got.Env["SILVERCUSTOMIZE"] != envValues["EQUALS"] {
		t.Errorf("silvercustomize saw EQUALS %q, want %q (the env file loaded first)", got.Env["SILVERCUSTOMIZE"], envValues["EQUALS"])
	}
	// The release's site directory and what its .pth adds come first.
	if want := []string{filepath.Join(rel, "lib", "python"), filepath.Join(rel, "src")}; got.Body != "src via x.pth" || fmt.Sprint(got.Path) != fmt.Sprint(want) {
		t.Errorf("body %q, sys.path starts %q, want %q", got.Body, got.Path, want)
	}

	if out, err := run("app/wsgi_noapp.py", "application"); err == nil || !strings.Contains(out, "runner app/wsgi_noapp.py defines no application") {
		t.Errorf("runner without the callable: %v\n%s", err, out)
	}
	if out, err := run("app/wsgi_failing.py", "application"); err == nil || !strings.Contains(out, "ValueError: nope") {
		t.Errorf("failing runner: %v\n%s", err, out)
	}
}

func TestPHPBootstrap(t *testing.T) {
	php := requireTool(t, "php")
	dir := t.TempDir()
	envFile := filepath.Join(dir, "run", "v1.env")
	data, err := formatEnvFile(envValues)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, envFile, string(data))
	boot, err := phpBootstrap(testVassalConfig("php", "main"), envFile)
	if err != nil {
		t.Fatal(err)
	}
	bootFile := filepath.Join(dir, "run", "v1.env.php")
	writeTestFile(t, bootFile, string(boot))
	code := `require $argv[1];
$out = [];
foreach (json_decode($argv[2]) as $k) {
    $out[$k] = [getenv($k), $_SERVER[$k] ?? null, $_ENV[$k] ?? null];
}
echo json_encode($out);`
	var keys []string
	for k := range envValues {
		keys = append(keys, k)
	}
	keysJSON, _ := json.Marshal(keys)
	out, err := exec.Command(php, "-r", code, "--", bootFile, string(keysJSON)).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got map[string][3]*string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	for k, v := range envValues {
		for i, where := range []string{"getenv", "$_SERVER", "$_ENV"} {
			if p := got[k][i]; p == nil || *p != v {
				t.Errorf("%s %s = %v, want %q", where, k, p, v)
			}
		}
	}

	// A missing env file stops the request rather than run the app without
	// its environment.
	os.Remove(envFile)
	if out, err := exec.Command(php, "-r", "require $argv[1]; echo 'ran';", "--", bootFile).CombinedOutput(); err == nil || bytes.Contains(out, []byte("ran")) {
		t.Errorf("missing env file: %v %s", err, out)
	}
	if _, err := phpBootstrap(testVassalConfig("php", "main"), "/srv/it's"); err == nil {
		t.Errorf("a quote in the env file's path was written into PHP")
	}
}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/" + name} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "needs /usr/bin/" + name
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true, so not skipping)", msg)
	}
	t.Skip(msg)
	return ""
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFailureCause(t *testing.T) {
	for _, c := range []struct {
		log  string
		want string
	}{
		{`*** Operational MODE: preforking ***
Traceback (most recent call last):
  File "/srv/run/v1.wsgi.py", line 40, in <module>
    _spec.loader.exec_module(_runner)
  File "/srv/rel/app.py", line 3, in <module>
    raise RuntimeError('boom at import')
RuntimeError: boom at import
unable to load app 0 (mountpoint='') (callable not found or import error)
*** no app loaded. GAME OVER ***`, "RuntimeError: boom at import"},
		{`Traceback (most recent call last):
  File "x.py", line 1, in <module>
ValueError: first

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "x.py", line 3, in <module>
KeyError: 'second'
unable to load app 0 (mountpoint='') (callable not found or import error)`, "KeyError: 'second'"},
		{"chdir(): No such file or directory [core/uwsgi.c line 2626]\n*** no app loaded. GAME OVER ***", "chdir(): No such file or directory [core/uwsgi.c line 2626]"},
		{"*** no app loaded. GAME OVER ***", "*** no app loaded. GAME OVER ***"},
		{`uwsgi socket 0 bound to UNIX address /run/gitreceive/sockets/demo.php.v1.sock fd 8
realpath() of /srv/rel/nope failed: No such file or directory [core/utils.c line 3662]
unable to set php docroot to /srv/rel/nope
VACUUM: unix socket /run/gitreceive/sockets/demo.php.v1.sock removed.`, "unable to set php docroot to /srv/rel/nope"},
	} {
		if got := failureCause(strings.Split(c.log, "\n")); got != c.want {
			t.Errorf("cause %q, want %q", got, c.want)
		}
	}
}

func TestStartWatchFindsFailure(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeTestFile(t, log, "an old line\n*** no app loaded. GAME OVER ***\n")
	w := &startWatch{rt: Runtime{EmperorStats: filepath.Join(dir, "none.sock"), LogsDir: dir}, vassalID: "x.ini", logFile: log, offset: fileSize(log), prefix: vassalLogPrefix(2)}
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan struct{})
	go func() {
		w.run(ctx, cancel)
		close(done)
	}()
	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Lines arrive in pieces; the old failure before the offset is not this
	// start's, nor is one another vassal of the instance logs meanwhile.
	for _, piece := range []string{"[v1] - unable to load app 0\n", "Traceback (most recent call last):\n  File \"a.py\"", ", line 1\nNameError: name 'x' is not defined\n[v2] - unable to load ", "app 0\n"} {
		if _, err := f.WriteString(piece); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	<-done
	var failure *appFailure
	if cause := context.Cause(ctx); !errors.As(cause, &failure) || failure.Error() != "the app did not start: NameError: name 'x' is not defined" {
		t.Fatalf("cause %v", cause)
	}
	var out bytes.Buffer
	w.printTail(&out)
	if want := "last lines of " + log + ":\n  unable to load app 0\n  Traceback (most recent call last):\n    File \"a.py\", line 1\n  NameError: name 'x' is not defined\n  unable to load app 0\n"; out.String() != want {
		t.Errorf("tail:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestReadLogRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	writeTestFile(t, secret, "do not show\n")
	log := filepath.Join(dir, "app.log")
	if err := os.Symlink(secret, log); err != nil {
		t.Fatal(err)
	}
	if data, _ := readLogFrom(log, 0); len(data) != 0 {
		t.Errorf("read %q through a symlink", data)
	}
}

func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	w := &lineWriter{out: &out, prefix: "  "}
	for _, p := range []string{"one\ntw", "o\r\n", strings.Repeat("x", maxLineBytes+10), "\nlast"} {
		w.Write([]byte(p))
	}
	w.flush()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 5 || lines[0] != "  one" || lines[1] != "  two" || lines[4] != "  last" ||
		!strings.HasSuffix(lines[2], "...") || len(lines[2]) != 2+maxLineBytes+3 {
		t.Errorf("lines %q", lines)
	}

	out.Reset()
	w = &lineWriter{out: &out, prefix: ""}
	for i := 0; i < maxScriptLines+50; i++ {
		fmt.Fprintf(w, "%d\n", i)
	}
	w.flush()
	lines = strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != maxScriptLines+1 || lines[maxScriptLines] != "... (more output not shown)" {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestFetchCommand(t *testing.T) {
	rel := t.TempDir()
	for name, mode := range map[string]os.FileMode{"bin/run.sh": 0o755, "bin/plain.sh": 0o644, "bin/task.py": 0o644, "bin/task.php": 0o644} {
		writeTestFile(t, filepath.Join(rel, name), "x")
		os.Chmod(filepath.Join(rel, name), mode)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(rel, "bin", "out.sh")); err != nil {
		t.Fatal(err)
	}
	argv, err := fetchCommand(rel, FetchStep{Script: "bin/run.sh", Args: []string{"a b", "$X"}})
	if err != nil || strings.Join(argv, "|") != filepath.Join(rel, "bin/run.sh")+"|a b|$X" {
		t.Errorf("run.sh: %q %v", argv, err)
	}
	argv, err = fetchCommand(rel, FetchStep{Script: "bin/task.py", Args: []string{"x"}})
	if err != nil || argv[0] != python3Path || argv[1] != filepath.Join(rel, "bin/task.py") || argv[2] != "x" {
		t.Errorf("task.py: %q %v", argv, err)
	}
	if _, err := fetchCommand(rel, FetchStep{Script: "bin/plain.sh"}); err == nil || !strings.Contains(err.Error(), "is not executable") {
		t.Errorf("plain.sh: %v", err)
	}
	if _, err := fetchCommand(rel, FetchStep{Script: "bin/out.sh"}); err == nil || !strings.Contains(err.Error(), "outside the release") {
		t.Errorf("out.sh: %v", err)
	}
	if _, err := fetchCommand(rel, FetchStep{Script: "bin/missing.sh"}); err == nil {
		t.Errorf("missing.sh: no error")
	}
}

// TestStartWatchReadsTheLastWordsOfAnExitedVassal: a vassal that fails to
// import writes its traceback and exits; the emperor may report it gone
// while the watcher's last read stopped inside the traceback. The cause is
// still the exception, not a line from the middle.
func TestStartWatchReadsTheLastWordsOfAnExitedVassal(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeTestFile(t, log, "")
	appendLog := func(s string) {
		f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString(s)
			f.Close()
		}
		if err != nil {
			t.Error(err)
		}
	}
	stats := filepath.Join(dir, "stats.sock")
	l, err := net.Listen("unix", stats)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	exited := make(chan struct{})
	var lastWords sync.Once
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			respawns := 0
			select {
			case <-exited:
				// The vassal finished its traceback and exited between the
				// watcher's read of the log and this question.
				respawns = 1
				lastWords.Do(func() {
					appendLog("return _bootstrap._gcd_import(name[level:], package, level)\nModuleNotFoundError: No module named 'silversupport'\n[v2] - unable to load app 0 (mountpoint='')\n")
				})
			default:
			}
			fmt.Fprintf(c, `{"vassals":[{"id":"x.ini","pid":%d,"respawns":%d}]}`, 10+respawns, respawns)
			c.Close()
		}
	}()
	w := &startWatch{rt: Runtime{EmperorStats: stats, LogsDir: dir}, vassalID: "x.ini", logFile: log, offset: 0, prefix: vassalLogPrefix(2)}
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan struct{})
	go func() {
		w.run(ctx, cancel)
		close(done)
	}()
	appendLog("Traceback (most recent call last):\n  File \"/usr/lib/python3.11/importlib/__init__.py\", line 126, in import_module\n    ")
	time.Sleep(3 * pollInterval) // the watcher has read this much
	close(exited)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not notice the exit")
	}
	var failure *appFailure
	if cause := context.Cause(ctx); !errors.As(cause, &failure) || failure.Error() != "the app did not start: ModuleNotFoundError: No module named 'silversupport'" {
		t.Fatalf("cause %v", cause)
	}
}

func TestPrintAnswer(t *testing.T) {
	long := strings.Repeat("line\n", answerLines+3)
	for _, tc := range []struct {
		body []byte
		want string
	}{
		{nil, "the last answer to GET /: 500 with an empty body\n"},
		{[]byte("<b>Fatal error</b>: Uncaught Error: Call to undefined function mysqli_connect()\r\n"),
			"the last answer to GET /: 500, beginning:\n  <b>Fatal error</b>: Uncaught Error: Call to undefined function mysqli_connect()\n"},
		{[]byte(long), "the last answer to GET /: 500, beginning:\n" + strings.Repeat("  line\n", answerLines) + "  ... (3 more lines)\n"},
	} {
		var out bytes.Buffer
		printAnswer(&out, "/", 500, tc.body)
		if out.String() != tc.want {
			t.Errorf("got:\n%s\nwant:\n%s", out.String(), tc.want)
		}
	}
}

func TestEnsureSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	me := tenant{uid: os.Getuid(), gid: os.Getgid()}
	// Without the receiver's: a random one, made once.
	if err := ensureSecret(path, "", me); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(path)
	if err := ensureSecret(path, "", me); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); len(first) != 64 || string(again) != string(first) {
		t.Fatalf("random secret %q then %q", first, again)
	}
	// With the receiver's: exactly it, replacing a node's own.
	want := strings.Repeat("ab", 32)
	if err := ensureSecret(path, want, me); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != want {
		t.Errorf("secret %q, want the receiver's", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	link := filepath.Join(dir, "link")
	os.Symlink(path, link)
	if err := ensureSecret(link, want, me); err == nil {
		t.Error("a symlink in the secret's place was written through")
	}
	if err := (Spec{Platform: "python", Runner: "a.py", Callable: "application", Secret: "xyz"}).Validate(); err == nil || !strings.Contains(err.Error(), "64 hex") {
		t.Errorf("a bad secret in the spec: %v", err)
	}
}
