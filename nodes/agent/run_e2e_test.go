//go:build e2e

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gitreceive/gitreceive/services"

	"github.com/gitreceive/gitreceive/nodes/testbed"
)

// runArgs are runScript's (destroy's) arguments for the helper
// that runs them in a test node (or, for the PTY test, on the host).
type runArgs struct {
	Runtime     *Runtime `json:",omitempty"` // nil: SystemRuntime
	App         string
	Instance    string
	Live        int
	Script      string
	Args        []string
	StdinFile   string  // the script's stdin, handed over as an *os.File ("": none)
	StdinPipe   bool    // ... or as a plain io.Reader
	TTY         bool    // tty=true, with the helper's own stdin, stdout and stderr (a terminal)
	CancelAfter float64 // seconds after which the context is cancelled (0: never)
}

// runResult is the helper's answer: one JSON document on stdout, after a
// "RESULT " marker in TTY mode (the script's output comes first there).
type runResult struct {
	Code       int     `json:"code"`
	Error      string  `json:"error"`
	Stdout     string  `json:"stdout"`
	Stderr     string  `json:"stderr"`
	Seconds    float64 `json:"seconds"`
	Foreground bool    `json:"foreground"` // TTY: the helper's group has the terminal again
}

const runResultMarker = "RESULT "

// runScriptHelper is the test binary's "run"/"destroy" entry point (see
// TestMain). Like the agent's main, SIGINT, SIGTERM and SIGHUP cancel its
// context.
func runScriptHelper(helper, args string) int {
	var a runArgs
	if err := json.Unmarshal([]byte(args), &a); err != nil {
		fmt.Fprintf(os.Stderr, "%s: arguments %q: %v\n", helper, args, err)
		return 2
	}
	rt := SystemRuntime()
	if a.Runtime != nil {
		rt = *a.Runtime
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if a.CancelAfter > 0 {
		time.AfterFunc(time.Duration(a.CancelAfter*float64(time.Second)), cancel)
	}
	var res runResult
	var err error
	started := time.Now()
	switch helper {
	case "destroy":
		err = rt.instance(a.App, a.Instance).destroy(ctx)
	case "run":
		var stdin io.Reader
		if a.StdinFile != "" {
			f, err := os.Open(a.StdinFile)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			defer f.Close()
			stdin = f
			if a.StdinPipe {
				stdin = struct{ io.Reader }{f}
			}
		}
		if a.TTY {
			res.Code, err = rt.instance(a.App, a.Instance).runScript(ctx, a.Live, scriptRun{name: a.Script, args: a.Args, tty: true}, os.Stdin, os.Stdout, os.Stderr)
			var pgrp int32
			_, _, e := syscall.Syscall(syscall.SYS_IOCTL, os.Stdin.Fd(), syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp)))
			res.Foreground = e == 0 && int(pgrp) == syscall.Getpgrp()
		} else {
			var stdout, stderr bytes.Buffer
			res.Code, err = rt.instance(a.App, a.Instance).runScript(ctx, a.Live, scriptRun{name: a.Script, args: a.Args}, stdin, &stdout, &stderr)
			res.Stdout, res.Stderr = stdout.String(), stderr.String()
		}
	}
	res.Seconds = time.Since(started).Seconds()
	if err != nil {
		res.Error = err.Error()
	}
	data, _ := json.Marshal(res)
	if a.TTY {
		fmt.Printf("\r\n%s%s\r\n", runResultMarker, data)
	} else {
		fmt.Printf("%s\n", data)
	}
	if err != nil {
		return 1
	}
	return 0
}

// parseRunResult finds the helper's answer in out.
func parseRunResult(t *testing.T, out string) runResult {
	t.Helper()
	i := strings.LastIndex(out, runResultMarker)
	if i >= 0 {
		out = out[i+len(runResultMarker):]
	}
	var res runResult
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&res); err != nil {
		t.Fatalf("no result from the helper (%v) in:\n%s", err, out)
	}
	return res
}

// run runs runScript inside the node.
func (n *testNode) run(a runArgs) runResult {
	n.t.Helper()
	data, err := json.Marshal(a)
	if err != nil {
		n.t.Fatal(err)
	}
	stdout, err := n.exec("env", testHelperEnv+"=run", testHelperArgsEnv+"="+string(data), rtHelperPath)
	res := parseRunResult(n.t, stdout)
	n.t.Logf("run %s %q: code %d, error %q (%.2fs; exec: %v)\nstdout: %s\nstderr: %s", a.Script, a.Args, res.Code, res.Error, res.Seconds, err, clip(res.Stdout), clip(res.Stderr))
	return res
}

// clip shortens s for a log.
func clip(s string) string {
	if len(s) > 2000 {
		return fmt.Sprintf("%s... (%d bytes)", s[:2000], len(s))
	}
	return s
}

func (n *testNode) mustRun(a runArgs, code int) runResult {
	n.t.Helper()
	res := n.run(a)
	if res.Error != "" || res.Code != code {
		n.t.Fatalf("run %s %q: code %d error %q, want code %d", a.Script, a.Args, res.Code, res.Error, code)
	}
	return res
}

func (n *testNode) destroy(app, instance string) runResult {
	n.t.Helper()
	data, err := json.Marshal(runArgs{App: app, Instance: instance})
	if err != nil {
		n.t.Fatal(err)
	}
	stdout, err := n.exec("env", testHelperEnv+"=destroy", testHelperArgsEnv+"="+string(data), rtHelperPath)
	res := parseRunResult(n.t, stdout)
	n.t.Logf("destroy %s/%s (%.2fs): error %q (exec: %v)", app, instance, res.Seconds, res.Error, err)
	return res
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// setupRuntimeNode starts a one-node test bed and sets it up as the
// runtime tests do: server-files' setup, this test binary at rtHelperPath.
func setupRuntimeNode(t *testing.T, prefix, subnet string) *testNode {
	t.Helper()
	testbed.Require(t)
	requireRuntimeStack(t)
	bed := testbed.New(t, testbed.Options{Prefix: prefix, Subnet: subnet, Count: 1})
	n := &testNode{t: t, bed: bed, node: bed.Nodes[0], rt: SystemRuntime()}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		n.t = t
		out, _ := n.exec("sh", "-c", "tail -n 40 /var/log/gitreceive/emperor.log; tail -n 30 /var/log/gitreceive/nginx/*/*/app.log; ls -la /etc/gitreceive/vassals /run/gitreceive/sockets; ps -eo user,pid,ppid,pgid,args")
		t.Logf("node state:\n%s", out)
	})
	start := time.Now()
	setUpTestNode(t, n.node, n.exec, rtHelperPath)
	t.Logf("node set up in %s", time.Since(start).Round(time.Millisecond))
	return n
}

// runScripts are the scripts the run tests add to the probe release.
var runScripts = map[string]file{
	"bin/printenv.sh": {mode: 0o755, content: "#!/bin/sh\nexec env -0\n"},
	"bin/show.sh": {mode: 0o755, content: `#!/bin/sh
echo "uid=$(id -u) cwd=$(pwd)"
echo "argc=$#"
for a in "$@"; do echo "arg=[$a]"; done
`},
	"bin/upper.sh": {mode: 0o755, content: "#!/bin/sh\nexec tr a-z A-Z\n"},
	// A child in its group, one that left it (setsid), then waiting.
	"bin/sleeper.sh": {mode: 0o755, content: `#!/bin/sh
sleep 300 &
echo "child=$!"
setsid sleep 301 &
echo "escaped=$!"
echo "self=$$"
wait
`},
	// The same, deaf to SIGTERM (its children inherit that).
	"bin/stubborn.sh": {mode: 0o755, content: `#!/bin/sh
trap '' TERM
sleep 300 &
echo "child=$!"
echo "self=$$"
wait
wait
`},
	// Leaves a daemon behind and exits at once.
	"bin/daemon.sh": {mode: 0o755, content: "#!/bin/sh\nsetsid sleep 302 &\necho \"daemon=$!\"\n"},
	"bin/tty.sh":    {mode: 0o755, content: "#!/bin/sh\ntty\necho \"groups=$(ps -o pgid=,tpgid= -p $$)\"\n"},
	// The app writes where it may: symlinks out of its own directories.
	"bin/plant.sh": {mode: 0o755, content: `#!/bin/sh
set -e
ln -s /srv/outside "$TEMP/evil-dir"
ln -s /srv/outside/keep "$TEMP/evil-file"
ln -s /srv/outside "$SILVER_LOGS/evil-dir"
mkdir "$TEMP/sub"
echo data > "$TEMP/sub/file"
echo left > /tmp/left-behind.$$
mkdir /var/tmp/left-behind.$$
`},
	"bin/notexec.sh": {content: "#!/bin/sh\necho never\n"},
}

// pidsOf reads NAME=PID lines.
func pidsOf(out string) map[string]int {
	pids := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^(\w+)=(\d+)$`).FindAllStringSubmatch(out, -1) {
		pids[m[1]], _ = strconv.Atoi(m[2])
	}
	return pids
}

// expectGone checks that none of pids is a process of the node.
func (n *testNode) expectGone(what string, pids map[string]int) {
	n.t.Helper()
	for name, pid := range pids {
		if pid == 0 {
			n.t.Errorf("%s: no pid for %s", what, name)
			continue
		}
		if _, err := os.Stat(n.fs("/proc/" + strconv.Itoa(pid))); !errors.Is(err, fs.ErrNotExist) {
			stat, _ := os.ReadFile(n.fs("/proc/" + strconv.Itoa(pid) + "/stat"))
			n.t.Errorf("%s: %s (pid %d) is still there: %s", what, name, pid, stat)
		}
	}
}

func TestRunScriptOnTestNode(t *testing.T) {
	n := setupRuntimeNode(t, "rs", "10.77.243.0/24")
	const app, inst = "runapp", "main"
	host := "run.runapp.test"
	files := probeRelease(probeRunner)
	for name, f := range runScripts {
		files[name] = f
	}
	rel := n.writeRelease(app, inst, 1, files)
	spec := probeSpec(host, "")
	n.mustStart(app, inst, 1, spec)
	appUser := services.Instance{App: app, Name: inst}.UnixUser()
	appUID := n.uid(app, inst)
	run := func(script string, args ...string) runArgs {
		return runArgs{App: app, Instance: inst, Live: 1, Script: script, Args: args}
	}

	t.Run("environment", func(t *testing.T) {
		n.t = t
		appEnv := parseProbe(t, n.mustGet(app, inst, 1, host, "", "/")).Env
		want := map[string]string{}
		for k, v := range appEnv {
			if !strings.HasPrefix(k, "UWSGI_") {
				want[k] = v
			}
		}
		res := n.mustRun(run("printenv.sh"), 0)
		got := map[string]string{}
		for _, kv := range strings.Split(strings.TrimSuffix(res.Stdout, "\x00"), "\x00") {
			k, v, _ := strings.Cut(kv, "=")
			got[k] = v
		}
		delete(got, "PWD") // the shell's own
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("the script's environment:\n%v\nthe app's (less UWSGI_*):\n%v", got, want)
		}
		for k, v := range trickyEnv {
			if got[k] != v {
				t.Errorf("the script's %s = %q, want %q", k, got[k], v)
			}
		}
		for _, k := range []string{"TEMP", "SILVER_LOGS", "SILVER_SECRET_FILE", "PATH", "LANG"} {
			if got[k] == "" {
				t.Errorf("the script has no %s", k)
			}
		}
		if !strings.HasPrefix(got["PATH"], filepath.Join(rel, "bin")+":") {
			t.Errorf("PATH %q does not start with the release's bin/", got["PATH"])
		}
	})

	t.Run("user, directory and arguments", func(t *testing.T) {
		n.t = t
		args := []string{"a b", `it's "quoted"`, "$HOME", "*", "", "  spaced  ", "%n", "; echo injected"}
		res := n.mustRun(run("show.sh", args...), 0)
		want := fmt.Sprintf("uid=%d cwd=%s\nargc=%d\n", appUID, rel, len(args))
		for _, a := range args {
			want += "arg=[" + a + "]\n"
		}
		if res.Stdout != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", res.Stdout, want)
		}
		// The same through a release-relative path.
		if res := n.mustRun(run("bin/show.sh", "x"), 0); !strings.Contains(res.Stdout, "arg=[x]\n") {
			t.Errorf("bin/show.sh: %q", res.Stdout)
		}
	})

	t.Run("exit code and stderr", func(t *testing.T) {
		n.t = t
		res := n.mustRun(run("fail.sh"), 3)
		if res.Stderr != "going to fail\n" {
			t.Errorf("stderr %q", res.Stderr)
		}
	})

	t.Run("stdin", func(t *testing.T) {
		n.t = t
		input := strings.Repeat("some input, line by line\n", 20000) // 500 KB: more than any pipe holds
		if err := os.WriteFile(n.fs("/srv/stdin.txt"), []byte(input), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, pipe := range []bool{false, true} {
			a := run("upper.sh")
			a.StdinFile, a.StdinPipe = "/srv/stdin.txt", pipe
			res := n.mustRun(a, 0)
			if res.Stdout != strings.ToUpper(input) {
				t.Errorf("pipe %v: stdout has %d bytes, want %d upper-cased", pipe, len(res.Stdout), len(input))
			}
		}
		// No stdin: the script reads nothing, at once.
		if res := n.mustRun(run("upper.sh"), 0); res.Stdout != "" || res.Seconds > 5 {
			t.Errorf("without stdin: %q after %.1fs", res.Stdout, res.Seconds)
		}
	})

	t.Run("python with lib/python", func(t *testing.T) {
		n.t = t
		res := n.mustRun(run("fetch.py", "x y", "$HOME"), 0)
		for _, w := range []string{`py argv=["x y", "$HOME"]`, "py probemod=imported through probe.pth"} {
			if !strings.Contains(res.Stdout, w+"\n") {
				t.Errorf("stdout lacks %q", w)
			}
		}
	})

	t.Run("refused", func(t *testing.T) {
		n.t = t
		for script, want := range map[string]string{
			"../../etc/passwd": `script "../../etc/passwd" is refused`,
			"/etc/passwd":      `script "/etc/passwd" is refused`,
			"bin/../../x":      `script "bin/../../x" is refused`,
			"notexec.sh":       `script "notexec.sh" is not executable`,
			"nosuchscript":     `script "nosuchscript" is not in the release's bin/ or top directory, nor on its PATH`,
		} {
			res := n.run(run(script))
			if !strings.HasPrefix(res.Error, want) || res.Code != 0 || res.Stdout != "" {
				t.Errorf("%s: code %d error %q, want %q...", script, res.Code, res.Error, want)
			}
		}
		a := run("show.sh")
		a.Live = 9
		if res := n.run(a); !strings.Contains(res.Error, "release v9 of runapp/main is not on this node") {
			t.Errorf("release 9: %q", res.Error)
		}
		// The PATH is the app's: system commands run, as the app user.
		if res := n.mustRun(run("id", "-u"), 0); res.Stdout != strconv.Itoa(appUID)+"\n" {
			t.Errorf("id -u: %q", res.Stdout)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		n.t = t
		a := run("sleeper.sh")
		a.CancelAfter = 1.5
		res := n.run(a)
		pids := pidsOf(res.Stdout)
		if res.Error != "" || res.Code != 128+int(syscall.SIGTERM) || res.Seconds > 4 {
			t.Errorf("cancelled: code %d error %q after %.1fs, want %d soon after 1.5 s", res.Code, res.Error, res.Seconds, 128+int(syscall.SIGTERM))
		}
		n.expectGone("sleeper.sh", pids)

		// 2.5 s: the shell must have set its trap by then, also on a
		// machine busy with other packages' node tests.
		a = run("stubborn.sh")
		a.CancelAfter = 2.5
		res = n.run(a)
		if res.Code != 128+int(syscall.SIGKILL) || res.Seconds < 7 || res.Seconds > 10.5 {
			t.Errorf("a script deaf to SIGTERM: code %d error %q after %.1fs, want %d after 2.5 s + 5 s", res.Code, res.Error, res.Seconds, 128+int(syscall.SIGKILL))
		}
		n.expectGone("stubborn.sh", pidsOf(res.Stdout))

		// Nor does what a script leaves behind outlive it.
		res = n.mustRun(run("daemon.sh"), 0)
		n.expectGone("daemon.sh", pidsOf(res.Stdout))
		if out, _ := n.exec("pgrep", "-u", appUser, "-x", "sleep"); strings.TrimSpace(out) != "" {
			t.Errorf("sleep processes of the app user left: %s", out)
		}
	})

	t.Run("tty", func(t *testing.T) {
		n.t = t
		a := run("tty.sh")
		a.TTY = true
		data, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		cmd := "exec env " + testHelperEnv + "=run " + testHelperArgsEnv + "=" + shellQuote(string(data)) + " " + rtHelperPath
		out, err := n.exec("script", "-qec", cmd, "/dev/null")
		t.Logf("under script: %v\n%s", err, out)
		res := parseRunResult(t, out)
		if res.Error != "" || res.Code != 0 || !res.Foreground {
			t.Errorf("code %d error %q, foreground afterwards %v", res.Code, res.Error, res.Foreground)
		}
		if !regexp.MustCompile(`(?m)^/dev/pts/\d+\r?$`).MatchString(out) {
			t.Errorf("tty did not name a terminal:\n%s", out)
		}
		m := regexp.MustCompile(`groups=\s*(\d+)\s+(\d+)`).FindStringSubmatch(out)
		if m == nil || m[1] != m[2] {
			t.Errorf("the script's process group is not the terminal's foreground one: %q", m)
		}
	})

	t.Run("destroy", func(t *testing.T) {
		n.t = t
		testDestroyOnNode(n, app, inst, host, spec)
	})
}

func testDestroyOnNode(n *testNode, app, inst, host string, spec Spec) {
	t := n.t
	appUser := services.Instance{App: app, Name: inst}.UnixUser()
	appUID := n.uid(app, inst)
	// Things outside the instance that the app's symlinks point at.
	if err := os.MkdirAll(n.fs("/srv/outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.fs("/srv/outside/keep"), []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.mustRun(runArgs{App: app, Instance: inst, Live: 1, Script: "plant.sh"}, 0)
	// A second release running, as during a deploy, and the route.
	files := probeRelease(probeRunner)
	n.writeRelease(app, inst, 2, files)
	n.mustStart(app, inst, 2, spec)
	data, err := json.Marshal(routeArgs{Runtime: n.rt, App: app, Instance: inst, Live: 1, Prev: 2, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := n.exec("env", testHelperEnv+"=route", testHelperArgsEnv+"="+string(data), rtHelperPath); err != nil {
		t.Fatalf("route: %v\n%s", err, out)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	get := func(host string) (int, string) {
		req, err := http.NewRequest("GET", "http://"+n.node.IP+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET / (Host %s): %v", host, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, string(body)
	}
	if status, body := get(host); status != 200 || !strings.Contains(body, `"host": "`+host+`"`) {
		t.Fatalf("before destroy: %d %q", status, body)
	}
	if status, _ := get("prev." + host); status != 200 {
		t.Fatalf("before destroy, prev.%s: %d", host, status)
	}

	paths := []string{
		n.rt.vassalPath(app, inst, 1), n.rt.vassalPath(app, inst, 2),
		n.rt.socketPath(app, inst, 1), n.rt.socketPath(app, inst, 2),
		n.rt.nginxPath(app, inst),
		n.rt.instanceDir(app, inst), n.rt.instanceLogsDir(app, inst), n.rt.instanceNginxLogsDir(app, inst),
		filepath.Join(n.rt.AppsDir, app), filepath.Join(n.rt.LogsDir, app), filepath.Join(n.rt.NginxLogsDir, app),
	}
	for _, p := range paths {
		if _, err := os.Lstat(n.fs(p)); err != nil {
			t.Errorf("before destroy: %v", err)
		}
	}

	res := n.destroy(app, inst)
	if res.Error != "" {
		t.Fatalf("destroy: %s", res.Error)
	}
	for _, p := range paths {
		if _, err := os.Lstat(n.fs(p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
	// Nothing named after the instance anywhere the runtime writes.
	id := InstanceID(app, inst)
	for _, dir := range []string{n.rt.VassalsDir, n.rt.SocketsDir, n.rt.NginxDir, n.rt.AppsDir, n.rt.LogsDir, n.rt.NginxLogsDir} {
		entries, _ := os.ReadDir(n.fs(dir))
		for _, e := range entries {
			if strings.Contains(e.Name(), id) || e.Name() == app {
				t.Errorf("%s/%s is left", dir, e.Name())
			}
		}
	}
	for _, v := range []int{1, 2} {
		n.expectStopped(app, inst, v)
	}
	if out, _ := n.exec("pgrep", "-a", "-U", strconv.Itoa(appUID)); strings.TrimSpace(out) != "" {
		t.Errorf("processes of the instance's user left: %s", out)
	}
	// Its user, group and cgroup are gone; nothing in /tmp is its.
	if out, err := n.exec("getent", "passwd", appUser); err == nil {
		t.Errorf("the instance's user is left: %s", out)
	}
	if out, err := n.exec("getent", "group", appUser); err == nil {
		t.Errorf("the instance's group is left: %s", out)
	}
	if out, _ := n.exec("sh", "-c", "ls -d /sys/fs/cgroup/gitreceive/$1 /sys/fs/cgroup/*/gitreceive/$1 2>/dev/null", "sh", id); strings.TrimSpace(out) != "" {
		t.Errorf("the instance's cgroup is left: %s", out)
	}
	if out, _ := n.exec("find", "/tmp", "/var/tmp", "-uid", strconv.Itoa(appUID)); strings.TrimSpace(out) != "" {
		t.Errorf("files of the instance's user are left: %s", out)
	}
	// What the app's symlinks pointed at is untouched.
	if data, err := os.ReadFile(n.fs("/srv/outside/keep")); err != nil || string(data) != "keep me\n" {
		t.Errorf("/srv/outside/keep after destroy: %q %v", data, err)
	}
	for _, h := range []string{host, "prev." + host} {
		if status, body := get(h); status != 404 || !strings.Contains(body, "No app is deployed at this address") {
			t.Errorf("after destroy, %s: %d %q, want the catch-all 404", h, status, body)
		}
	}
	if res := n.destroy(app, inst); res.Error != "" {
		t.Errorf("second destroy: %s", res.Error)
	}
	// runScript on what is gone says so.
	if res := n.run(runArgs{App: app, Instance: inst, Live: 1, Script: "show.sh"}); !strings.Contains(res.Error, "is not on this node") {
		t.Errorf("run after destroy: %q", res.Error)
	}
}
