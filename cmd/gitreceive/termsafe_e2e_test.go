//go:build e2e

package main_test

// Output safety through the real ssh and git clients: an app whose start,
// update_fetch script, requests and `run` scripts print terminal control
// sequences (ESC, CR, BEL, C1, a right-to-left override, bytes that are not
// UTF-8) reaches the pusher's `remote:` lines, `logs`, `logs -f` and `run`
// (no terminal) escaped; `run --raw` passes stdout unchanged and `run` on a
// terminal stays raw.

import (
	"bufio"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/hooks/termsafe"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// noise is what the app prints, as Python source (the .py files hold no
// control byte themselves); noiseShown is how every terminal-bound path
// must show it, and noiseRaw the bytes Python writes.
const (
	noisePy    = `\x1b[2J\x1b]0;pwned\x07 over\rwritten \u009b31m \u202eevil`
	noiseShown = `\x1b[2J\x1b]0;pwned\x07 over\x0dwritten \u009b31m \u202eevil`
	noiseRaw   = "\x1b[2J\x1b]0;pwned\x07 over\rwritten \u009b31m \u202eevil"
)

// noisyApp prints noise when it starts, on GET /noisy and from its
// update_fetch script; with broken, it fails to load after printing it.
func noisyApp(broken bool) map[string]string {
	app := "import os\nNOISE = '" + noisePy + "'\n" +
		"os.write(2, ('START ' + NOISE + '\\n').encode())\n" +
		"os.write(2, b'RAWSTART \\xff\\x9b\\x1b[31m tail\\n')\n"
	if broken {
		app += "raise RuntimeError('BROKEN ' + NOISE)\n"
	}
	app += "def application(environ, start_response):\n" +
		"    if environ.get('PATH_INFO') == '/noisy':\n" +
		"        os.write(2, ('REQUEST ' + NOISE + '\\n').encode())\n" +
		"    start_response('200 OK', [('Content-Type', 'text/plain')])\n" +
		"    return [b'ok']\n"
	return map[string]string{
		"app.ini": "[production]\napp_name = noisy\nrunner = app.py\ndefault_location = noisy.example.com\n" +
			"health_check = /health\nupdate_fetch = script:fetch.py\n",
		"app.py": app,
		"fetch.py": "import os\nos.write(1, ('FETCH ' + '" + noisePy + "\\n').encode())\n" +
			"os.write(1, b'RAWFETCH \\xff\\x07\\r\\n')\n",
		// What `run` is given: stdout and stderr, an escape sequence and a
		// UTF-8 character each split across two writes with a pause
		// between, then bytes that are not UTF-8.
		"noise.py": "import os, time\nNOISE = '" + noisePy + "'\n" +
			"os.write(1, ('OUT ' + NOISE + '\\n').encode())\n" +
			"os.write(2, ('ERR ' + NOISE + '\\n').encode())\n" +
			"os.write(1, b'SPLIT \\x1b')\ntime.sleep(0.3)\nos.write(1, b'[2J caf\\xc3')\ntime.sleep(0.3)\nos.write(1, b'\\xa9\\n')\n" +
			"os.write(1, b'BIN \\x00\\xff\\xfe\\x9b\\n')\n",
	}
}

// Bytes noise.py writes to stdout, and how they must be shown.
const (
	noiseOutRaw   = "OUT " + noiseRaw + "\nSPLIT \x1b[2J café\nBIN \x00\xff\xfe\x9b\n"
	noiseOutShown = "OUT " + noiseShown + "\nSPLIT \\x1b[2J café\nBIN \\x00\\xff\\xfe\\x9b\n"
)

// mustBeTerminalSafe fails if out holds anything a terminal would obey:
// a control character other than tab and newline (C0, DEL, C1), a
// bidirectional control, or bytes that are not UTF-8. That is exactly the
// text termsafe.String leaves unchanged (its unit and fuzz tests check
// that rule on their own).
func mustBeTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	shown := termsafe.String(out)
	if shown == out {
		return
	}
	i := 0
	for i < len(out) && i < len(shown) && out[i] == shown[i] {
		i++
	}
	t.Fatalf("%s holds something a terminal would obey at byte %d (%q):\n%q", what, i, out[min(i, len(out)):min(i+8, len(out))], out)
}

func TestTerminalSafeOutput(t *testing.T) {
	f, bed := fanOutBed(t, "tsf", "10.77.197.0/24", 1)
	node := bed.Nodes[0]

	// A push shows the update_fetch script's output escaped, under the
	// node's name.
	work := f.alice.WorkTree(t, noisyApp(false))
	r := f.alice.Git(t, work, "push", f.alice.URL("noisy"), "main")
	if r.Code != 0 {
		t.Fatalf("push: %s", r)
	}
	mustBeTerminalSafe(t, "the push's output", r.Stdout+r.Stderr)
	mustContain(t, r.Stderr, "remote:        "+node.Name+" ")
	mustContain(t, r.Stderr, "FETCH "+noiseShown)
	mustContain(t, r.Stderr, `RAWFETCH \xff\x07`)
	mustGet(t, node, "noisy.example.com", "/noisy", "ok")

	// logs: the app's own lines from its start and a request, escaped.
	r = f.alice.SSH(t, "", nil, "logs", "noisy", "-n", "200")
	if r.Code != 0 {
		t.Fatalf("logs: %s", r)
	}
	mustBeTerminalSafe(t, "logs", r.Stdout+r.Stderr)
	mustContain(t, r.Stdout, node.Name+" ")
	mustContain(t, r.Stdout, "START "+noiseShown)
	mustContain(t, r.Stdout, `RAWSTART \xff\x9b\x1b[31m tail`)
	mustContain(t, r.Stdout, "REQUEST "+noiseShown)

	// logs -f: a line the app prints while it is followed arrives escaped.
	follow := exec.Command("sh", "-c", f.alice.SSHCommand()+" -p "+f.srv.Port()+" git@127.0.0.1 logs noisy -f -n 0")
	follow.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-follow.Process.Pid, syscall.SIGKILL)
		follow.Wait()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		rd := bufio.NewReader(stdout)
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			lines <- line
		}
	}()
	var seen strings.Builder
	deadline := time.After(30 * time.Second)
	for tries := 0; !strings.Contains(seen.String(), "REQUEST "+noiseShown); {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("logs -f ended before the request's line:\n%s", seen.String())
			}
			seen.WriteString(line)
		case <-time.After(time.Second):
			// tail -F may start after the first request: ask again,
			// a bounded number of times.
			if tries++; tries > 20 {
				t.Fatalf("logs -f did not show the request's line:\n%q", seen.String())
			}
			mustGet(t, node, "noisy.example.com", "/noisy", "ok")
		case <-deadline:
			t.Fatalf("logs -f did not show the request's line within 30s:\n%q", seen.String())
		}
	}
	mustBeTerminalSafe(t, "logs -f", seen.String())

	// run without a terminal: stdout and stderr escaped as they stream
	// (the split ESC is still escaped, the split é is still é).
	r = f.alice.SSH(t, "", nil, "run", "noisy", "noise.py")
	if r.Code != 0 || r.Stdout != noiseOutShown {
		t.Fatalf("run without a terminal: stdout %q, want %q; %s", r.Stdout, noiseOutShown, r)
	}
	mustBeTerminalSafe(t, "run's stderr", r.Stderr)
	mustContain(t, r.Stderr, "ERR "+noiseShown)

	// --all-nodes labels and escapes every line.
	r = f.alice.SSH(t, "", nil, "run", "noisy", "--all-nodes", "noise.py")
	mustBeTerminalSafe(t, "run --all-nodes", r.Stdout+r.Stderr)
	mustContain(t, r.Stdout, node.Name+" ")
	mustContain(t, r.Stdout, "ERR "+noiseShown)

	// run --raw: stdout byte for byte, for piping; stderr, still on the
	// terminal, escaped.
	r = f.alice.SSH(t, "", nil, "run", "noisy", "--raw", "noise.py")
	if r.Code != 0 || r.Stdout != noiseOutRaw {
		t.Fatalf("run --raw: stdout %q, want %q; %s", r.Stdout, noiseOutRaw, r)
	}
	mustBeTerminalSafe(t, "run --raw's stderr", r.Stderr)
	mustContain(t, r.Stderr, "ERR "+noiseShown)

	// run on a terminal (ssh -tt) is the person's own terminal session:
	// raw.
	r = f.alice.SSH(t, "", []string{"-tt"}, "run", "noisy", "noise.py")
	if r.Code != 0 || !strings.Contains(r.Stdout, "OUT "+noiseRaw) {
		t.Fatalf("run on a terminal: %q, want the raw bytes; %s", r.Stdout, r)
	}

	// --raw where it cannot mean anything is refused, saying what to do.
	for _, tc := range []struct {
		opts []string
		args []string
		want string
	}{
		{[]string{"-tt"}, []string{"run", "noisy", "--raw", "noise.py"}, "with ssh -t the output is raw already: drop -t or --raw"},
		{nil, []string{"run", "noisy", "--all-nodes", "--raw", "noise.py"}, "give --node NAME instead of --all-nodes"},
	} {
		r := f.alice.SSH(t, "", tc.opts, tc.args...)
		if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, tc.want) {
			t.Fatalf("%v %v: want a refusal saying %q; %s", tc.opts, tc.args, tc.want, r)
		}
	}

	// A push whose app fails to load shows the tail of app.log, escaped,
	// and is rejected.
	f.alice.Commit(t, work, "broken", map[string]string{"app.py": noisyApp(true)["app.py"]})
	r = f.alice.Git(t, work, "push", f.alice.URL("noisy"), "main")
	if r.Code == 0 {
		t.Fatalf("a push of an app that cannot load was accepted: %s", r)
	}
	mustBeTerminalSafe(t, "the rejected push's output", r.Stdout+r.Stderr)
	mustContain(t, r.Stderr, "BROKEN "+noiseShown)
	mustContain(t, r.Stderr, "Push rejected")

	// The receiver's log quotes node errors too: nothing raw there either.
	if logs := f.srv.Logs(); strings.ContainsAny(logs, "\x1b\x07\r") {
		t.Fatalf("the receiver's log holds raw control characters:\n%q", logs)
	}
}

// hostileOutputCases are hostile inputs that the server quotes back when
// it refuses them: each refusal must show them escaped (added to issue 9's
// corpus here, run with its checks by TestHostileTerminalOutput).
func (h *hostile) outputCases() []hostileCase {
	esc := "\x1b]0;pwned\x07\x1b[2J"
	return []hostileCase{
		h.pushCase("app.ini value with ESC", "app_name", map[string]string{"app.ini": "[production]\napp_name = my" + esc + "app\nrunner = app.py\n"}),
		h.pushCase("app.ini key with ESC and CR", "unknown key", map[string]string{"app.ini": "[production]\napp_name = myapp\nrun" + esc + "\rner = app.py\n"}),
		h.pushCase(".pth line with ESC", "lib/python/x.pth", map[string]string{"lib/python/x.pth": "/home/u/" + esc + "/nowhere\n"}),
		h.pushCase("file name with ESC and CR", "control character", map[string]string{"a" + esc + "\rb": ""}),
		h.sshCase("run option with ESC", "alice", "unknown option", nil, "run", "myapp", "--"+esc, "x"),
		h.sshCase("activate release with ESC", "alice", "is not a release", nil, "activate", "myapp", "v"+esc),
		h.sshCase("logs --node with C1 and RLO", "alice", "there is no node", nil, "logs", "myapp", "--node", "\u009b31m\u202eevil"),
		h.sshCase("unknown command with BEL", "alice", "unknown command", nil, "x\a\a\a"),
		{name: "help with invalid UTF-8 and ESC (Go client)", want: "invalid UTF-8",
			run: func(t *testing.T) receivertest.Result { return h.goSSH(t, h.aliceKey.Signer, "help \xff\x1b[2J", "") }},
	}
}

// TestHostileTerminalOutput runs outputCases with the corpus' checks
// (non-zero exit, the message, nothing touched, the server still serves,
// a deployer still deploys), and requires every output to be safe for a
// terminal.
func TestHostileTerminalOutput(t *testing.T) {
	h := newHostile(t)
	for _, tc := range h.outputCases() {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshot(t)
			r := tc.run(t)
			if r.Code == 0 {
				t.Errorf("exit 0, want a failure; %s", r)
			}
			if line := lineWith(r.Stdout+r.Stderr, tc.want); line == "" {
				t.Errorf("output lacks %q; %s", tc.want, r)
			} else {
				t.Logf("exit %d: %s", r.Code, line)
			}
			mustBeTerminalSafe(t, "the output", r.Stdout+r.Stderr)
			h.assertUntouched(t, before)
			h.assertDataDir(t)
			h.assertServes(t)
		})
	}
	h.assertDeploys(t)
}
