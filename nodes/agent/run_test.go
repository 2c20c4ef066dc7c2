//go:build e2e

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gitreceive/gitreceive/nodes/agent/pysupport"
)

// runFixture is an instance on the host for runScript, its app user
// nobody: the tests need root.
type runFixture struct {
	t         *testing.T
	rt        Runtime
	app, inst string
	rel       string
	env       map[string]string // run/v1.env's
}

func newRunFixture(t *testing.T) *runFixture {
	t.Helper()
	if os.Geteuid() != 0 {
		// As testbed.Require: CI must never pass by skipping.
		if os.Getenv("CI") == "true" {
			t.Fatal("runScript runs scripts as the app user: needs root (CI=true, so not skipping)")
		}
		t.Skip("runScript runs scripts as the app user: needs root")
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip("no user nobody to run scripts as")
	}
	if _, err := os.Stat(python3Path); err != nil {
		t.Skipf("needs %s", python3Path)
	}
	// Not t.TempDir: its 0700 directories are closed to nobody.
	base, err := os.MkdirTemp("", "gitreceive-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	rt := Runtime{
		AppsDir:      filepath.Join(base, "apps"),
		VassalsDir:   filepath.Join(base, "vassals"),
		NginxDir:     filepath.Join(base, "nginx"),
		SocketsDir:   filepath.Join(base, "sockets"),
		RoutesDir:    filepath.Join(base, "routes"),
		LogsDir:      filepath.Join(base, "logs"),
		NginxLogsDir: filepath.Join(base, "nginx-logs"),
		EmperorStats: filepath.Join(base, "no-emperor.sock"),
		FixedUser:    "nobody",
	}
	f := &runFixture{t: t, rt: rt, app: "runapp", inst: "main"}
	f.rel = rt.releaseDir(f.app, f.inst, 1)
	dir := rt.instanceDir(f.app, f.inst)
	f.env = map[string]string{
		"CONFIG_TRICKY":      trickyEnv["CONFIG_TRICKY"],
		"CONFIG_SPACES":      trickyEnv["CONFIG_SPACES"],
		"CONFIG_WHICH":       "run/v1.env",
		"SILVER_APP_NAME":    "runapp",
		"TEMP":               filepath.Join(dir, "tmp"),
		"SILVER_LOGS":        rt.instanceLogsDir(f.app, f.inst),
		"SILVER_SECRET_FILE": filepath.Join(dir, "secret"),
		"PATH":               filepath.Join(f.rel, "bin") + ":/usr/local/bin:/usr/bin:/bin",
		// As prepareInstance writes them: python3 sees the release.
		"PYTHONPATH":        filepath.Join(base, "python"),
		pysupport.AppDirEnv: f.rel,
	}
	if err := pysupport.Install(filepath.Join(base, "python")); err != nil {
		t.Fatal(err)
	}
	f.writeEnv(filepath.Join(dir, runDirName, "v1.env"), f.env)
	instEnv := map[string]string{}
	for k, v := range f.env {
		instEnv[k] = v
	}
	instEnv["CONFIG_WHICH"] = "env"
	f.writeEnv(filepath.Join(dir, envFileName), instEnv)
	f.release(map[string]file{
		"bin/printenv.sh": {mode: 0o755, content: "#!/bin/sh\nexec env -0\n"},
		"bin/show.sh": {mode: 0o755, content: `#!/bin/sh
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) cwd=$(pwd)"
for a in "$@"; do echo "arg=[$a]"; done
`},
		"bin/fail.sh":          {mode: 0o755, content: "#!/bin/sh\necho err >&2\nexit 3\n"},
		"bin/killed.sh":        {mode: 0o755, content: "#!/bin/sh\nkill -KILL $$\n"},
		"bin/upper.sh":         {mode: 0o755, content: "#!/bin/sh\nexec tr a-z A-Z\n"},
		"bin/stopped.sh":       {mode: 0o755, content: "#!/bin/sh\nkill -STOP $$\necho resumed\n"},
		"bin/task.py":          {content: "import sys, probemod\nprint(probemod.VALUE, sys.argv[1:])\n"},
		"lib/python/probe.pth": {content: "../../src\n"},
		"src/probemod.py":      {content: "VALUE = 'through probe.pth'\n"},
		// A child in its group, one that left it, and their pids.
		"bin/sleeper.sh": {mode: 0o755, content: `#!/bin/sh
sleep 300 &
echo "child=$!"
setsid sleep 301 &
echo "escaped=$!"
echo "self=$$"
echo ready
wait
`},
		"bin/stubborn.sh": {mode: 0o755, content: `#!/bin/sh
trap '' TERM
sleep 300 &
echo "child=$!"
echo "self=$$"
echo ready
wait
wait
`},
		"bin/daemon.sh": {mode: 0o755, content: "#!/bin/sh\nsetsid sh -c 'sleep 303 & sleep 302' &\necho \"daemon=$!\"\nsleep 0.2\n"},
	})
	return f
}

func (f *runFixture) writeEnv(path string, env map[string]string) {
	f.t.Helper()
	data, err := formatEnvFile(env)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *runFixture) release(files map[string]file) {
	f.t.Helper()
	for name, fl := range files {
		p := filepath.Join(f.rel, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.t.Fatal(err)
		}
		mode := fl.mode
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(p, []byte(fl.content), mode); err != nil {
			f.t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			f.t.Fatal(err)
		}
	}
}

// run is runScript with buffers; it fails the test on an error.
func (f *runFixture) run(ctx context.Context, stdin io.Reader, script string, args ...string) (int, string, string) {
	f.t.Helper()
	var stdout, stderr bytes.Buffer
	code, err := f.rt.instance(f.app, f.inst).runScript(ctx, 1, scriptRun{name: script, args: args}, stdin, &stdout, &stderr)
	if err != nil {
		f.t.Fatalf("%s %q: %v", script, args, err)
	}
	return code, stdout.String(), stderr.String()
}

func parseEnv0(out string) map[string]string {
	env := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(out, "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}

// expectNoProcess checks that pid is no process (a zombie counts as one).
func expectNoProcess(t *testing.T, what string, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Errorf("%s: no pid", what)
		return
	}
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		t.Errorf("%s (pid %d) is still there: %s", what, pid, stat)
	}
}

func TestRunScript(t *testing.T) {
	f := newRunFixture(t)
	ctx := context.Background()
	nobody, _ := user.Lookup("nobody")

	t.Run("environment", func(t *testing.T) {
		f.t = t
		_, out, _ := f.run(ctx, nil, "printenv.sh")
		want := map[string]string{"LANG": "C.UTF-8"}
		for k, v := range f.env {
			want[k] = v
		}
		got := parseEnv0(out)
		delete(got, "PWD") // the shell's own
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("environment:\n%v\nwant:\n%v", got, want)
		}
		// Without run/v1.env (the release is not running), the env file's.
		snapshot := filepath.Join(f.rt.instanceDir(f.app, f.inst), runDirName, "v1.env")
		data, _ := os.ReadFile(snapshot)
		os.Remove(snapshot)
		_, out, _ = f.run(ctx, nil, "printenv.sh")
		if got := parseEnv0(out)["CONFIG_WHICH"]; got != "env" {
			t.Errorf("without run/v1.env: CONFIG_WHICH=%q, want the env file's", got)
		}
		// Neither: never started here.
		envFile := filepath.Join(f.rt.instanceDir(f.app, f.inst), envFileName)
		envData, _ := os.ReadFile(envFile)
		os.Remove(envFile)
		_, err := f.rt.instance(f.app, f.inst).runScript(ctx, 1, scriptRun{name: "printenv.sh"}, nil, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "has no environment on this node") {
			t.Errorf("without env files: %v", err)
		}
		os.WriteFile(envFile, envData, 0o600)
		os.WriteFile(snapshot, data, 0o600)

		// run --env: laid over the release's environment.
		var stdout bytes.Buffer
		if _, err := f.rt.instance(f.app, f.inst).runScript(ctx, 1, scriptRun{name: "printenv.sh", env: []string{"EXTRA=a b=c", "CONFIG_WHICH=given"}}, nil, &stdout, io.Discard); err != nil {
			t.Fatal(err)
		}
		if got := parseEnv0(stdout.String()); got["EXTRA"] != "a b=c" || got["CONFIG_WHICH"] != "given" {
			t.Errorf("with --env: EXTRA=%q CONFIG_WHICH=%q", got["EXTRA"], got["CONFIG_WHICH"])
		}
	})

	t.Run("user, directory, arguments", func(t *testing.T) {
		f.t = t
		args := []string{"a b", `it's "quoted"`, "$HOME", "*", "", "\ttab", "; rm -rf /"}
		code, out, _ := f.run(ctx, nil, "show.sh", args...)
		want := fmt.Sprintf("uid=%s gid=%s groups=%s cwd=%s\n", nobody.Uid, nobody.Gid, nobody.Gid, f.rel)
		for _, a := range args {
			want += "arg=[" + a + "]\n"
		}
		if code != 0 || out != want {
			t.Errorf("code %d, stdout:\n%s\nwant:\n%s", code, out, want)
		}
		if _, err := f.rt.instance(f.app, f.inst).runScript(ctx, 1, scriptRun{name: "show.sh", args: []string{"a\x00b"}}, nil, io.Discard, io.Discard); err == nil {
			t.Errorf("an argument with NUL was accepted")
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		f.t = t
		if code, _, stderr := f.run(ctx, nil, "fail.sh"); code != 3 || stderr != "err\n" {
			t.Errorf("fail.sh: %d %q", code, stderr)
		}
		if code, _, _ := f.run(ctx, nil, "killed.sh"); code != 128+9 {
			t.Errorf("killed.sh: %d, want 137", code)
		}
		// A stopped script is resumed: nothing else could.
		if code, out, _ := f.run(ctx, nil, "stopped.sh"); code != 0 || out != "resumed\n" {
			t.Errorf("stopped.sh: %d %q", code, out)
		}
	})

	t.Run("python", func(t *testing.T) {
		f.t = t
		if code, out, stderr := f.run(ctx, nil, "task.py", "x y"); code != 0 || out != "through probe.pth ['x y']\n" {
			t.Errorf("task.py: %d %q %q", code, out, stderr)
		}
	})

	t.Run("streams", func(t *testing.T) {
		f.t = t
		input := strings.Repeat("streamed through\n", 50000)
		if code, out, _ := f.run(ctx, strings.NewReader(input), "upper.sh"); code != 0 || out != strings.ToUpper(input) {
			t.Errorf("reader stdin: code %d, %d bytes out", code, len(out))
		}
		in := filepath.Join(t.TempDir(), "in")
		os.WriteFile(in, []byte(input), 0o600)
		file, err := os.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		outFile, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer outFile.Close()
		code, err := f.rt.instance(f.app, f.inst).runScript(ctx, 1, scriptRun{name: "upper.sh"}, file, outFile, io.Discard)
		data, _ := os.ReadFile(outFile.Name())
		if err != nil || code != 0 || string(data) != strings.ToUpper(input) {
			t.Errorf("file stdin and stdout: %d %v, %d bytes out", code, err, len(data))
		}
		// A stdin that never ends does not hold the script's end up.
		pr, pw := io.Pipe()
		defer pw.Close()
		start := time.Now()
		if code, out, _ := f.run(ctx, pr, "show.sh"); code != 0 || out == "" || time.Since(start) > 3*time.Second {
			t.Errorf("endless stdin: %d %q after %s", code, out, time.Since(start))
		}
		// Output comes as it is written, not at the end.
		r, w := io.Pipe()
		done := make(chan int, 1)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			code, _ := f.rt.instance(f.app, f.inst).runScript(ctx, 1, scriptRun{name: "sleeper.sh"}, nil, w, io.Discard)
			w.Close()
			done <- code
		}()
		if line, err := readLine(r, 5*time.Second, "ready"); err != nil {
			t.Errorf("sleeper.sh's first lines did not come while it runs: %q %v", line, err)
		}
		cancel()
		go io.Copy(io.Discard, r)
		<-done
	})

	t.Run("cancel", func(t *testing.T) {
		f.t = t
		for _, c := range []struct {
			script   string
			code     int
			min, max time.Duration
		}{
			{"sleeper.sh", 128 + int(syscall.SIGTERM), 0, 3 * time.Second},
			{"stubborn.sh", 128 + int(syscall.SIGKILL), runKillDelay, runKillDelay + 3*time.Second},
		} {
			ctx, cancel := context.WithCancel(context.Background())
			r, w := io.Pipe()
			var out bytes.Buffer
			type result struct {
				code int
				err  error
			}
			done := make(chan result, 1)
			go func() {
				code, err := f.rt.instance(f.app, f.inst).runScript(ctx, 1, scriptRun{name: c.script}, nil, w, io.Discard)
				w.Close()
				done <- result{code, err}
			}()
			line, err := readLine(r, 10*time.Second, "ready")
			out.WriteString(line)
			if err != nil {
				cancel()
				t.Fatalf("%s: %q %v", c.script, line, err)
			}
			go io.Copy(&bytes.Buffer{}, r)
			start := time.Now()
			cancel()
			res := <-done
			took := time.Since(start)
			if res.err != nil || res.code != c.code || took < c.min || took > c.max {
				t.Errorf("%s: code %d err %v after %s, want %d within [%s, %s]", c.script, res.code, res.err, took, c.code, c.min, c.max)
			}
			for name, pid := range pidsOf(out.String()) {
				expectNoProcess(t, c.script+" "+name, pid)
			}
		}
		// What a script leaves running goes when it ends.
		code, out, _ := f.run(ctx, nil, "daemon.sh")
		if code != 0 {
			t.Errorf("daemon.sh: %d", code)
		}
		expectNoProcess(t, "daemon.sh's daemon", pidsOf(out)["daemon"])
		uid, _ := strconv.Atoi(nobody.Uid)
		for _, pid := range childPIDs(os.Getpid()) {
			if procRealUID(pid) == uid {
				t.Errorf("process %d of nobody is left", pid)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		f.t = t
		for _, c := range []struct {
			app, inst string
			n         int
			script    string
			want      string
		}{
			{f.app, f.inst, 2, "show.sh", "release v2 of runapp/main is not on this node"},
			{"Bad", f.inst, 1, "show.sh", "invalid app"},
			{f.app, "../x", 1, "show.sh", "invalid app"},
			{f.app, f.inst, 0, "show.sh", "invalid release number 0"},
			{f.app, f.inst, 1, "../../etc/passwd", `script "../../etc/passwd" is refused`},
			{f.app, f.inst, 1, "nothing-of-that-name", `script "nothing-of-that-name" is not in`},
		} {
			code, err := f.rt.instance(c.app, c.inst).runScript(ctx, c.n, scriptRun{name: c.script}, nil, io.Discard, io.Discard)
			if err == nil || code != 0 || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s/%s v%d %s: %d %v, want %q", c.app, c.inst, c.n, c.script, code, err, c.want)
			}
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := f.rt.instance(f.app, f.inst).runScript(cancelled, 1, scriptRun{name: "show.sh"}, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "not starting") {
			t.Errorf("with a cancelled context: %v", err)
		}
		rt := f.rt
		rt.FixedUser = "root"
		if _, err := rt.instance(f.app, f.inst).runScript(ctx, 1, scriptRun{name: "show.sh"}, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "apps never run as root") {
			t.Errorf("as root: %v", err)
		}
	})
}

// readLine reads r until a line equal to want and returns what it read.
func readLine(r io.Reader, timeout time.Duration, want string) (string, error) {
	type res struct {
		data string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		var data []byte
		buf := make([]byte, 1)
		for {
			_, err := r.Read(buf)
			if err != nil {
				ch <- res{string(data), err}
				return
			}
			data = append(data, buf[0])
			if bytes.HasSuffix(data, []byte("\n"+want+"\n")) || string(data) == want+"\n" {
				ch <- res{string(data), nil}
				return
			}
		}
	}()
	select {
	case r := <-ch:
		return r.data, r.err
	case <-time.After(timeout):
		return "", errors.New("timed out")
	}
}

// startPTY opens a pseudo-terminal pair (posix_openpt, unlockpt, ptsname).
func startPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	var num uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&num))); e != 0 {
		t.Fatal(e)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(num)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// ptyOutput collects what a terminal's master reads.
type ptyOutput struct {
	ch   chan []byte
	data []byte
}

func readPTY(m *os.File) *ptyOutput {
	o := &ptyOutput{ch: make(chan []byte, 64)}
	go func() {
		defer close(o.ch)
		for {
			buf := make([]byte, 4096)
			k, err := m.Read(buf)
			if k > 0 {
				o.ch <- buf[:k]
			}
			if err != nil {
				return
			}
		}
	}()
	return o
}

// waitFor reads until the output holds s (or timeout, or the end).
func (o *ptyOutput) waitFor(s string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for !bytes.Contains(o.data, []byte(s)) {
		select {
		case b, ok := <-o.ch:
			if !ok {
				return bytes.Contains(o.data, []byte(s))
			}
			o.data = append(o.data, b...)
		case <-deadline:
			return false
		}
	}
	return true
}

// TestRunScriptTTY runs the helper as a session leader on a PTY of its
// own, as under sshd: the script gets the terminal, Ctrl-C and a window
// size change reach it and not the agent, and the agent has the terminal
// back afterwards.
func TestRunScriptTTY(t *testing.T) {
	f := newRunFixture(t)
	f.release(map[string]file{"bin/interactive.py": {content: `import os, signal, sys
got = []
signal.signal(signal.SIGINT, lambda *a: got.append("INT"))
signal.signal(signal.SIGWINCH, lambda *a: got.append("WINCH %dx%d" % tuple(os.get_terminal_size(0))))
print("tty=%s foreground=%s term=%s" % (os.ttyname(0), os.getpgrp() == os.tcgetpgrp(0), os.environ.get("TERM")))
print("ready", flush=True)
line = sys.stdin.readline()
print("got=%s line=%s" % (",".join(sorted(got)), line.strip()), flush=True)
sys.exit(7)
`}})
	m, s := startPTY(t)
	data, err := json.Marshal(runArgs{Runtime: &f.rt, App: f.app, Instance: f.inst, Live: 1, Script: "interactive.py", TTY: true})
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), testHelperEnv+"=run", testHelperArgsEnv+"="+string(data), "TERM=xterm-test")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var waitErr error
	done := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	out := readPTY(m)
	if !out.waitFor("ready", 20*time.Second) {
		t.Fatalf("the script did not get ready:\n%s", out.data)
	}
	if _, err := m.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	ws := [4]uint16{33, 99, 0, 0} // rows, columns
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws))); e != 0 {
		t.Fatal(e)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := m.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if !out.waitFor(runResultMarker, 20*time.Second) || !out.waitFor("}", 5*time.Second) {
		t.Fatalf("no result:\n%s", out.data)
	}
	text := string(out.data)
	t.Logf("terminal:\n%s", text)
	res := parseRunResult(t, text)
	if res.Error != "" || res.Code != 7 || !res.Foreground {
		t.Errorf("code %d error %q, the agent foreground again: %v; want 7 (Ctrl-C went to the script only), true", res.Code, res.Error, res.Foreground)
	}
	for _, w := range []string{"foreground=True term=xterm-test", "got=INT,WINCH 99x33 line=hello"} {
		if !strings.Contains(text, w) {
			t.Errorf("terminal lacks %q", w)
		}
	}
	if !regexp.MustCompile(`tty=/dev/pts/\d+ `).MatchString(text) {
		t.Errorf("the script's stdin is not the terminal")
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Errorf("helper: %v", waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the helper did not exit")
	}
}
