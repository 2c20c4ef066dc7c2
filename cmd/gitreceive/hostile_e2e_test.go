//go:build e2e

package main_test

// The hostile input corpus (issue 9): names, app.ini files, trees, key lines,
// SSH client behaviour and command lines a hostile or careless client may
// send, each sent through the real ssh and git clients (or, where OpenSSH
// cannot send it, the Go client) to the real server. Every case must end
// with a non-zero exit and a message that says what was wrong; after every
// case nothing outside the data dir has changed, the data dir holds only
// the app that was deployed on purpose, and the server still answers; after
// every group a deployer still deploys.

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/cmdline"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// hostileReleaseLimit is the fixture's max_release_size: above the 1 MiB
// an app.ini may have, so a 2 MB app.ini reaches the app.ini check.
const hostileReleaseLimit = 3 << 20

type hostileCase struct {
	name  string
	want  string // in stdout or stderr
	run   func(t *testing.T) receivertest.Result
	check func(t *testing.T, r receivertest.Result) // more assertions, optional
}

type hostileGroup struct {
	name  string
	cases []hostileCase
}

// hostile is the fixture plus what the corpus watches.
type hostile struct {
	*fixture
	canary     string // planted in /tmp: what hostile input aims at
	pwned      string // appears only if something ran a payload
	knownHosts string // for ssh command lines built here
	work       string // bob's clone of myapp, for the deploys between groups
	main       string // the commit myapp's main must be at
	watched    []string
	dataTop    []string
	cwd        string
	cwdTop     []string
}

func TestHostileInput(t *testing.T) {
	start := time.Now()
	h := newHostile(t)
	t.Logf("setup %.1fs", time.Since(start).Seconds())
	groups, n := h.groups(), 0
	for _, g := range groups {
		n += len(g.cases)
	}
	if n < 40 {
		t.Fatalf("the corpus has %d cases; issue 9 asks for at least 40", n)
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			groupStart := time.Now()
			for _, tc := range g.cases {
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
					if tc.check != nil {
						tc.check(t, r)
					}
					h.assertUntouched(t, before)
					h.assertDataDir(t)
					h.assertServes(t)
				})
			}
			h.assertDeploys(t)
			t.Logf("%d cases and a deploy in %.1fs", len(g.cases), time.Since(groupStart).Seconds())
		})
	}
	t.Logf("%d hostile cases in %.1fs", n, time.Since(start).Seconds())
}

func newHostile(t *testing.T) *hostile {
	t.Helper()
	receivertest.RequireTools(t, "git", "ssh", "ssh-keygen")
	f := &fixture{data: t.TempDir(), keysDir: t.TempDir()}
	ini := fmt.Sprintf("max_release_size = %d\n", hostileReleaseLimit)
	if err := os.WriteFile(filepath.Join(f.data, "gitreceive.ini"), []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	f.aliceKey = receivertest.NewKey(t, f.keysDir, "alice")
	f.bobKey = receivertest.NewKey(t, f.keysDir, "bob")
	receivertest.AddKey(t, bin, f.data, f.aliceKey, "--admin")
	receivertest.AddKey(t, bin, f.data, f.bobKey, "--apps", "myapp")
	f.nodeRoot = filepath.Join(f.data, "local-node")
	f.srv = receivertest.StartProcess(t, bin, f.data, agent.RootEnv+"="+f.nodeRoot)
	f.alice = receivertest.NewClient(t, f.srv.Server, f.aliceKey)
	f.bob = receivertest.NewClient(t, f.srv.Server, f.bobKey)
	f.unauthorized = receivertest.NewClient(t, f.srv.Server, receivertest.NewKey(t, f.keysDir, "mallory"))

	h := &hostile{fixture: f}
	canary, err := os.MkdirTemp("", "gitreceive-canary-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(canary) })
	h.canary, h.pwned = canary, filepath.Join(canary, "pwned")
	for _, dir := range []string{"trace", "hooks"} {
		if err := os.Mkdir(filepath.Join(canary, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"secret": "do not read\n",
		"x.so":   "not a shared object\n",
		// A hook a leaked core.hooksPath would run instead of gitreceive's:
		// it accepts every push and leaves a mark.
		"hooks/pre-receive": "#!/bin/sh\ntouch " + h.pwned + "-hook\nexit 0\n",
	} {
		if err := os.WriteFile(filepath.Join(canary, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	khDir := t.TempDir()
	h.knownHosts = filepath.Join(khDir, "known_hosts")
	line := fmt.Sprintf("[%s]:%s %s", f.srv.Host(), f.srv.Port(), gossh.MarshalAuthorizedKey(f.srv.HostKey(t)))
	if err := os.WriteFile(h.knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}

	// The one app deployed on purpose.
	work := f.bob.WorkTree(t, receivertest.App("myapp", nil))
	r := f.bob.MustGit(t, work, "push", f.bob.URL("myapp"), "main")
	mustContain(t, r.Stderr, "myapp v1 (main) is live")
	h.work = work
	h.main = strings.TrimSpace(f.bob.MustGit(t, work, "rev-parse", "HEAD").Stdout)

	h.watched = []string{canary, khDir, f.keysDir, f.alice.Home, f.bob.Home, f.unauthorized.Home}
	h.dataTop = dirNames(t, f.data)
	if h.cwd, err = os.Getwd(); err != nil {
		t.Fatal(err)
	}
	h.cwdTop = h.cwdEntries(t)
	return h
}

func (h *hostile) groups() []hostileGroup {
	long := strings.Repeat("a", 250)
	sh := "touch${IFS}" + h.pwned // a payload that leaves a mark if a shell runs it
	return []hostileGroup{
		{"names", []hostileCase{
			h.sshCase("app with ..", "alice", `invalid app name "my..app"`, nil, "git-receive-pack 'my..app'"),
			h.sshCase("app with $()", "alice", `invalid app name "$(touch`, nil, "git-receive-pack '$(touch "+h.pwned+")'"),
			h.sshCase("app with backticks", "alice", "invalid app name \"`touch", nil, "git-upload-pack '`touch "+h.pwned+"`'"),
			h.sshCase("app with ; and |", "alice", `invalid app name "a;touch`, nil, "git-receive-pack 'a;touch "+h.pwned+"|cat'"),
			h.sshCase("app path to /etc", "alice", `invalid app name "../../../../etc"`, nil, "git-upload-pack '../../../../etc'"),
			h.sshCase("app 250 chars", "alice", "invalid app name \""+long[:60]+"\"...", nil, "git-receive-pack '"+long+"'"),
			h.sshCase("app with \\x01", "alice", `invalid app name "a\x01b"`, nil, "git-receive-pack 'a\x01b'"),
			{name: "app with NUL (Go client)", want: "cannot parse the command: NUL byte",
				run: func(t *testing.T) receivertest.Result {
					return h.goSSH(t, h.aliceKey.Signer, "git-receive-pack 'my\x00app'", "")
				}},
			{name: "app with Cyrillic а (git push)", want: `invalid app name "/my\u0430pp"`,
				run: func(t *testing.T) receivertest.Result { return h.pushApp(t, h.alice, "my\u0430pp", "main", nil) }},
			{name: "app with shell payload (git push)", want: `invalid app name "/a;touch${IFS}`,
				run: func(t *testing.T) receivertest.Result { return h.pushApp(t, h.alice, "a;"+sh, "main", nil) }},
			h.branchCase("branch with ;", "x;"+sh, `branch "x;touch${IFS}/`),
			h.branchCase("branch with $()", "$("+sh+")", `branch "$(touch${IFS}/`),
			h.branchCase("branch with backticks", "a`"+sh+"`", "branch \"a`touch${IFS}/"),
			{name: "branch with |", want: `branch "a|b" cannot be deployed`,
				run: func(t *testing.T) receivertest.Result { return h.pushApp(t, h.bob, "myapp", "a|b", nil) }},
			{name: "branch main with Cyrillic а", want: `branch "m\u0430in" cannot be deployed`,
				run: func(t *testing.T) receivertest.Result { return h.pushApp(t, h.bob, "myapp", "m\u0430in", nil) }},
			{name: "branch 250 chars", want: "is too long to deploy: it is 250 characters",
				run: func(t *testing.T) receivertest.Result { return h.pushApp(t, h.bob, "myapp", long, nil) }},
			// git checks ref names only after pre-receive, so these must be
			// caught before the deploy (they once went live with no branch).
			{name: "branch with .. (raw protocol)", want: `branch "a..b" is not a valid git branch name`,
				run: func(t *testing.T) receivertest.Result { return h.rawPush(t, "refs/heads/a..b") }},
			{name: "branch with \\x01 (raw protocol)", want: `branch "a\x01b" cannot be deployed`,
				run: func(t *testing.T) receivertest.Result { return h.rawPush(t, "refs/heads/a\x01b") }},
			{name: "branch twice in one push (raw protocol)", want: `"twice" is updated twice in one push`,
				run: func(t *testing.T) receivertest.Result { return h.rawPush(t, "refs/heads/twice", "refs/heads/twice") }},
			{name: "branch under main", want: `branch "main/x" cannot be created while "main" exists`,
				run: func(t *testing.T) receivertest.Result { return h.pushApp(t, h.bob, "myapp", "main/x", nil) }},
		}},
		{"app.ini", []hostileCase{
			h.pushCase("not INI", "app.ini:1: cannot parse", map[string]string{"app.ini": "this is { not ini ]]]\n"}),
			h.pushCase("2 MB", "app.ini: it is 1.9 MB, more than the 1.0 MB such a file may be", map[string]string{"app.ini": strings.Repeat("a", 2_000_000)}),
			h.pushCase("binary", "so it is not a text file", map[string]string{"app.ini": binaryJunk(4096)}),
			h.pushCase("NUL in a value", "contains a NUL byte", map[string]string{"app.ini": "[production]\napp_name = myapp\nrunner = app.py\x00\n"}),
			h.pushCase("duplicate key", "app_name is set again here, overriding line 2",
				map[string]string{"app.ini": "[production]\napp_name = myapp\nrunner = app.py\napp_name = other\n"}),
			h.pushCase("duplicate section", "app_name is set again here",
				map[string]string{"app.ini": "[production]\napp_name = myapp\nrunner = app.py\n[production]\napp_name = x\n"}),
			h.pushCase("unknown key (typo of runner)", "unknown key runer; did you mean runner?",
				map[string]string{"app.ini": "[production]\napp_name = myapp\nruner = app.py\n"}),
			h.pushCase("30,000 unknown keys", "has more than 1000 keys",
				map[string]string{"app.ini": "[production]\napp_name = myapp\nrunner = app.py\n" + manyKeys(30_000)}),
			h.pushCase("app_name with Cyrillic а", `app_name = "my\u0430pp" but you pushed to myapp`,
				map[string]string{"app.ini": "[production]\napp_name = my\u0430pp\nrunner = app.py\n"}),
			h.pushCase("empty", "has no [production] section", map[string]string{"app.ini": ""}),
			h.pushCase("missing", "app.ini is missing", map[string]string{"-app.ini": ""}),
			h.pushCase("runner outside the app", "runner", map[string]string{"app.ini": "[production]\napp_name = myapp\nrunner = ../../../../etc/passwd\n"}),
		}},
		{"tree", []hostileCase{
			h.pushCase("symlink loop", "is part of a loop", map[string]string{"@a": "b", "@b": "a"}),
			h.pushCase("symlink to itself", "is part of a loop", map[string]string{"@loop": "loop"}),
			h.pushCase("symlink up and out", "leak leads outside the app", map[string]string{"@leak": "../../../.." + h.canary + "/secret"}),
			h.pushCase("absolute symlink", "points outside the app (absolute path)", map[string]string{"@leak": h.canary + "/secret"}),
			h.pushCase("escape through a dir symlink", "leads outside the app", map[string]string{"d/keep": "", "@d/up": "..", "@esc": "d/up/../" + filepath.Base(h.canary)}),
			h.pushCase("app.ini symlink out", "app.ini leads outside the app", map[string]string{"@app.ini": "../../../etc/passwd"}),
			h.pushCase(".pth relative ..", "leads out of the app through its .. components",
				map[string]string{"lib/python/x.pth": "../../../.." + h.canary + "\n"}),
			h.pushCase(".pth absolute with ..", "contains a .. component",
				map[string]string{"lib/python/x.pth": "/home/u/myapp/../../.." + h.canary + "\n"}),
			h.pushCase(".pth NUL", "the line contains a NUL byte", map[string]string{"lib/python/x.pth": "/home/u/myapp/src\x00/x\n"}),
			h.pushCase(".pth 100 KB line", "the line is 100001 bytes, over the 4096-byte limit",
				map[string]string{"src/x.py": "", "lib/python/x.pth": "/" + strings.Repeat("a", 100_000) + "\n"}),
			h.pushCase("path with newline", `the path "a\nb" contains a control character`, map[string]string{"a\nb": ""}),
			h.pushCase("path not UTF-8", `the path "bad\xffname" is not valid UTF-8`, map[string]string{"bad\xffname": ""}),
			{name: "tree entry ..", want: "hasDotdot",
				run: func(t *testing.T) receivertest.Result { return h.pushCrafted(t, "100644", "..", "x") }},
			{name: "tree entry .git", want: "hasDotgit",
				run: func(t *testing.T) receivertest.Result { return h.pushCrafted(t, "100644", ".git", "x") }},
			{name: "symlink target 5000 bytes", want: "reading symlink long",
				run: func(t *testing.T) receivertest.Result {
					return h.pushCrafted(t, "120000", "long", strings.Repeat("x/", 2500))
				}},
			{name: "submodule", want: "is a git submodule",
				run: func(t *testing.T) receivertest.Result {
					return h.pushCrafted(t, "160000", "vendor", strings.Repeat("1", 40))
				}},
			h.pushCase("one 4 MB file", "more than the release size limit of 3.0 MB",
				map[string]string{"big.bin": binaryJunk(4 << 20)}),
			h.pushCase("40 files of 100 KB", "more than the release size limit",
				manyFiles(40, 100<<10)),
		}},
		{"keys", []hostileCase{
			h.keyCase("command= option", `command="touch `+h.pwned+`" `+h.aliceKey.PubLine, "alice", "key options such as `command=` are not accepted"),
			h.keyCase("other options", `no-pty,permitopen="*:*",environment="LD_PRELOAD=/x" `+h.aliceKey.PubLine, "alice", "key options"),
			h.keyCase("two keys on one line", h.aliceKey.PubLine+" "+h.bobKey.PubLine, "alice", "line 1 holds more than one key"),
			h.keyCase("two keys on two lines", h.aliceKey.PubLine+"\n"+h.bobKey.PubLine+"\n", "alice", "found 2 keys; add one key at a time"),
			h.keyCase("comments only", "# my key\n\n# is elsewhere\n", "alice", "no public key found"),
			h.keyCase("garbage base64", "ssh-ed25519 !!!!not-base64!!!! zed", "alice", "line 1 is not an OpenSSH public key"),
			h.keyCase("unknown key type", "ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIG9= zed", "alice", "not an OpenSSH public key"),
			h.keyCase("DSA", "ssh-dss AAAAB3NzaC1kc3MAAACBAP== zed", "alice", "DSA keys (ssh-dss) are insecure"),
			{name: "RSA 1024", want: "this RSA key has 1024 bits",
				run: func(t *testing.T) receivertest.Result {
					return h.alice.SSH(t, sshKeygen(t, "-t", "rsa", "-b", "1024"), nil, "keys", "add", "zed", "--admin")
				}},
			{name: "certificate", want: "SSH certificates (ssh-ed25519-cert-v01@openssh.com) are not accepted",
				run: func(t *testing.T) receivertest.Result {
					return h.alice.SSH(t, certificate(t), nil, "keys", "add", "zed", "--admin")
				}},
			{name: "private key", want: "this is a private key",
				run: func(t *testing.T) receivertest.Result {
					priv, err := os.ReadFile(h.bobKey.Path)
					if err != nil {
						t.Fatal(err)
					}
					return h.alice.SSH(t, string(priv), nil, "keys", "add", "zed", "--admin")
				},
				check: func(t *testing.T, r receivertest.Result) {
					priv, _ := os.ReadFile(h.bobKey.Path)
					if body := strings.Split(string(priv), "\n")[1]; strings.Contains(r.Stdout+r.Stderr, body[:20]) {
						t.Errorf("the private key was echoed: %s", r)
					}
				}},
			h.keyCase("1 MB of input", strings.Repeat("A", 1<<20), "alice", "the input is more than 16384 bytes"),
			h.keyCase("key name ../../x", h.unauthorized.Key.PubLine, "alice", `key name "../../x" is not valid`, "keys", "add", "../../x", "--admin"),
			h.keyCase("apps with Cyrillic а", h.unauthorized.Key.PubLine, "alice", `app name "my\u0430pp" is not valid`, "keys", "add", "zed", "--apps", "my\u0430pp"),
			h.keyCase("keys add as a deployer", h.unauthorized.Key.PubLine, "bob", `"keys" is for admins only`),
		}},
		{"ssh", []hostileCase{
			h.sshCase("shell", "alice", "there is no shell here", []string{"-T"}),
			h.sshCase("shell with a PTY", "alice", "there is no shell here", []string{"-tt"}),
			h.sshCase("git-receive-pack with a PTY", "alice", `"git-receive-pack" does not run on a terminal`, []string{"-tt"}, "git-receive-pack", "myapp"),
			h.sshCase("keys list with a PTY", "alice", `"keys" does not run on a terminal`, []string{"-tt"}, "keys", "list"),
			h.sshCase("subsystem sftp", "alice", "subsystem request failed", []string{"-s"}, "sftp"),
			h.sshCase("remote forwarding -R", "alice", "remote port forwarding failed",
				[]string{"-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:" + h.srv.Port()}, "version"),
			h.sshCase("stdio forwarding -W", "alice", "stdio forwarding failed", []string{"-W", "127.0.0.1:" + h.srv.Port()}),
			{name: "local forwarding -L", want: "open failed", run: func(t *testing.T) receivertest.Result { return h.forward(t, false) },
				check: func(t *testing.T, r receivertest.Result) { mustContain(t, r.Stderr, "no public key found") }},
			{name: "dynamic forwarding -D", want: "open failed", run: func(t *testing.T) receivertest.Result { return h.forward(t, true) },
				check: func(t *testing.T, r receivertest.Result) { mustContain(t, r.Stderr, "no public key found") }},
			{name: "SetEnv LD_PRELOAD", want: "app.ini is missing",
				run: func(t *testing.T) receivertest.Result {
					return h.pushEnv(t, "LD_PRELOAD="+h.canary+"/x.so LD_LIBRARY_PATH="+h.canary)
				},
				check: func(t *testing.T, r receivertest.Result) {
					mustContain(t, r.Stderr, `setting env LD_PRELOAD = "`+h.canary+`/x.so"`) // it was sent
					if strings.Contains(r.Stderr, "ld.so") || strings.Contains(r.Stderr, "cannot be preloaded") {
						t.Errorf("LD_PRELOAD reached a process on the server: %s", r)
					}
				}},
			{name: "SetEnv GIT_CONFIG_* core.hooksPath", want: "app.ini is missing", // gitreceive's hook ran, not the planted one
				run: func(t *testing.T) receivertest.Result {
					return h.pushEnv(t, "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.hooksPath GIT_CONFIG_VALUE_0="+h.canary+"/hooks")
				},
				check: func(t *testing.T, r receivertest.Result) { mustContain(t, r.Stderr, "setting env GIT_CONFIG_VALUE_0") }},
			{name: "SetEnv GIT_DIR, GIT_TRACE", want: "app.ini is missing",
				run: func(t *testing.T) receivertest.Result {
					return h.pushEnv(t, "GIT_DIR=/etc GIT_TRACE="+h.canary+"/trace/t GIT_TRACE_PACKET="+h.canary+"/trace/p GIT_EXEC_PATH="+h.canary)
				},
				check: func(t *testing.T, r receivertest.Result) { mustContain(t, r.Stderr, "setting env GIT_TRACE ") }},
			{name: "unknown key, 10 connections", want: "Permission denied (publickey)",
				run: func(t *testing.T) receivertest.Result {
					var r receivertest.Result
					for i := 0; i < 10; i++ {
						if r = h.unauthorized.SSH(t, "", nil, "version"); r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
							t.Errorf("attempt %d: %s", i+1, r)
						}
					}
					return r
				}},
			{name: "13 unknown keys in one connection", want: "too many authentication failures",
				run: func(t *testing.T) receivertest.Result {
					argv := h.sshArgv(h.unauthorized.Key, "ERROR")
					dir := t.TempDir()
					for i := 0; i < 13; i++ {
						argv = append(argv, "-i", receivertest.NewKey(t, dir, fmt.Sprintf("k%d", i)).Path)
					}
					argv = append(argv, "-i", h.aliceKey.Path, "-p", h.srv.Port(), "git@"+h.srv.Host(), "version")
					return h.run(t, argv, "", nil)
				}},
		}},
		{"commands", []hostileCase{
			h.sshCase("releases without app", "alice", "usage: releases", nil, "releases"),
			h.sshCase("releases with extra args", "alice", "usage: releases", nil, "releases", "myapp", "extra"),
			h.sshCase("releases of a $() branch", "alice", `invalid branch "$(touch`, nil, "releases 'myapp@$(touch "+h.pwned+")'"),
			h.sshCase("activate without args", "alice", "usage: activate", nil, "activate"),
			h.sshCase("activate without release", "alice", "usage: activate", nil, "activate", "myapp"),
			h.sshCase("activate v99999999999999999999", "alice", `"v99999999999999999999" is not a release`, nil, "activate", "myapp", "v99999999999999999999"),
			h.sshCase("logs -n abc", "alice", "-n takes a number of lines", nil, "logs", "myapp", "-n", "abc"),
			h.sshCase("logs --node ../x", "alice", `there is no node "../x"`, nil, "logs", "myapp", "--node", "../x"),
			h.sshCase("run without script", "alice", "usage: run", nil, "run", "myapp"),
			h.sshCase("run without anything", "alice", "usage: run", nil, "run"),
			h.sshCase("destroy without --confirm", "alice", "usage: destroy", nil, "destroy", "myapp"),
			h.sshCase("destroy confirming another app", "alice", "does not name the app; nothing was destroyed", nil, "destroy", "myapp", "--confirm", "other"),
			h.sshCase("destroy an ungranted app", "bob", `may not manage app "otherapp"`, nil, "destroy", "otherapp", "--confirm", "otherapp"),
			h.sshCase("keys add as a deployer", "bob", `"keys" is for admins only`, nil, "keys", "add", "zed", "--admin"),
			h.sshCase("help nosuchcmd", "alice", `unknown command "nosuchcmd"`, nil, "help", "nosuchcmd"),
			h.sshCase("rm -rf /", "alice", `unknown command "rm"`, nil, "rm", "-rf", "/"),
			h.sshCase("sh -c", "alice", `unknown command "sh"`, nil, "sh -c 'touch "+h.pwned+"'"),
			h.sshCase("version with args", "alice", "usage: version", nil, "version", "--verbose"),
			h.sshCase("unterminated quote", "alice", "unterminated single quote", nil, "help 'x"),
			h.sshCase("trailing backslash", "alice", "trailing backslash", nil, `help x\`),
			h.sshCase("70 KB command line", "alice", "command too long", nil, "help "+strings.Repeat("a", 70_000)),
			{name: "invalid UTF-8 (Go client)", want: "invalid UTF-8",
				run: func(t *testing.T) receivertest.Result { return h.goSSH(t, h.aliceKey.Signer, "help \xff\xfe", "") }},
			{name: "NUL after a command (Go client)", want: "NUL byte",
				run: func(t *testing.T) receivertest.Result {
					return h.goSSH(t, h.aliceKey.Signer, "version\x00; touch "+h.pwned, "")
				}},
		}},
	}
}

// sshCase runs `ssh [opts] git@HOST remote...` as alice or bob.
func (h *hostile) sshCase(name, who, want string, opts []string, remote ...string) hostileCase {
	return hostileCase{name: name, want: want, run: func(t *testing.T) receivertest.Result {
		return h.client(who).SSH(t, "", opts, remote...)
	}}
}

// keyCase runs `keys add zed --admin` (or args) with stdin.
func (h *hostile) keyCase(name, stdin, who, want string, args ...string) hostileCase {
	if args == nil {
		args = []string{"keys", "add", "zed", "--admin"}
	}
	return hostileCase{name: name, want: want, run: func(t *testing.T) receivertest.Result {
		return h.client(who).SSH(t, stdin, nil, args...)
	}}
}

// branchCase pushes the valid app to a branch whose name cannot be deployed.
func (h *hostile) branchCase(name, branch, shown string) hostileCase {
	return hostileCase{name: name, want: "cannot be deployed: a branch name becomes a directory and a host name",
		run: func(t *testing.T) receivertest.Result { return h.pushApp(t, h.bob, "myapp", branch, nil) },
		check: func(t *testing.T, r receivertest.Result) {
			mustContain(t, r.Stderr, shown)
			mustContain(t, r.Stderr, "Push rejected: nothing was changed.")
		}}
}

// pushCase pushes the smallest valid app changed by files to myapp's main,
// as bob (a deployer).
func (h *hostile) pushCase(name, want string, files map[string]string) hostileCase {
	return hostileCase{name: name, want: want, run: func(t *testing.T) receivertest.Result {
		return h.pushApp(t, h.bob, "myapp", "main", files)
	}}
}

func (h *hostile) client(who string) *receivertest.Client {
	if who == "bob" {
		return h.bob
	}
	return h.alice
}

// pushApp commits the smallest valid app, changed by files, as a new root
// commit and force-pushes it to ref (a branch name) of app. In files,
// "@NAME" is a symlink to the value and "-NAME" removes NAME.
func (h *hostile) pushApp(t *testing.T, c *receivertest.Client, app, branch string, files map[string]string) receivertest.Result {
	t.Helper()
	dir := h.commitTree(t, c, files)
	url := fmt.Sprintf("ssh://git@%s/%s", h.srv.Addr, app)
	return c.Git(t, dir, "push", "--force", url, "main:refs/heads/"+branch)
}

func (h *hostile) commitTree(t *testing.T, c *receivertest.Client, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	all := receivertest.App("myapp", nil)
	for name, content := range files {
		plain := strings.TrimLeft(name, "-@")
		delete(all, plain)
		delete(all, "@"+plain)
		if !strings.HasPrefix(name, "-") {
			all[name] = content
		}
	}
	for name, content := range all {
		p := filepath.Join(dir, strings.TrimPrefix(name, "@"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if strings.HasPrefix(name, "@") {
			err = os.Symlink(content, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	c.MustGit(t, dir, "init", "-q", "-b", "main")
	c.MustGit(t, dir, "add", "-A")
	c.MustGit(t, dir, "commit", "-q", "-m", "hostile")
	return dir
}

// pushCrafted pushes a tree git's own commands would not make: the valid
// app plus one entry NAME of MODE whose blob is content (for a gitlink,
// content is the commit id).
func (h *hostile) pushCrafted(t *testing.T, mode, name, content string) receivertest.Result {
	t.Helper()
	c := h.bob
	dir := t.TempDir()
	c.MustGit(t, dir, "init", "-q", "-b", "main")
	hash := func(data string) string {
		cmd := c.GitCmd(context.Background(), dir, "hash-object", "-w", "--stdin")
		cmd.Stdin = strings.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("hash-object: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	var list strings.Builder
	for file, data := range receivertest.App("myapp", nil) {
		fmt.Fprintf(&list, "100644 blob %s\t%s\n", hash(data), file)
	}
	switch mode {
	case "160000":
		fmt.Fprintf(&list, "160000 commit %s\t%s\n", content, name)
	default:
		fmt.Fprintf(&list, "%s blob %s\t%s\n", mode, hash(content), name)
	}
	cmd := c.GitCmd(context.Background(), dir, "mktree")
	cmd.Stdin = strings.NewReader(list.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mktree: %v", err)
	}
	commit := strings.TrimSpace(c.MustGit(t, dir, "commit-tree", "-m", "crafted", strings.TrimSpace(string(out))).Stdout)
	c.MustGit(t, dir, "update-ref", "refs/heads/main", commit)
	return c.Git(t, dir, "push", "--force", c.URL("myapp"), "main")
}

// pushEnv pushes an app without app.ini (rejected by gitreceive's own
// pre-receive) with `ssh -o SetEnv=ENV`; ssh's debug lines show what it sent.
func (h *hostile) pushEnv(t *testing.T, env string) receivertest.Result {
	t.Helper()
	dir := h.commitTree(t, h.bob, map[string]string{"-app.ini": ""})
	argv := append(h.sshArgv(h.bobKey, "DEBUG1"), "-o", "SetEnv="+env)
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = cmdline.Quote(a)
	}
	extra := []string{"GIT_SSH_COMMAND=" + strings.Join(quoted, " ")}
	return h.run(t, []string{"git", "push", "--force", h.bob.URL("myapp"), "main"}, dir, extra)
}

// rawPush speaks the receive-pack protocol itself to create refs at main's
// commit: git refuses to send such refs, so this is how a hostile client
// would. The result's code is what git push exits with when a ref is
// refused (1), or git's own when it failed.
func (h *hostile) rawPush(t *testing.T, refs ...string) receivertest.Result {
	t.Helper()
	head, err := exec.Command("git", "--git-dir", filepath.Join(h.data, "repos", "myapp.git"), "rev-parse", "refs/heads/main").Output()
	if err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	for i, ref := range refs {
		line := fmt.Sprintf("%s %s %s", strings.Repeat("0", 40), strings.TrimSpace(string(head)), ref)
		if i == 0 {
			line += "\x00report-status"
		}
		fmt.Fprintf(&in, "%04x%s\n", len(line)+5, line)
	}
	in.WriteString("0000")
	pack := []byte("PACK\x00\x00\x00\x02\x00\x00\x00\x00") // version 2, no objects
	sum := sha1.Sum(pack)
	in.Write(pack)
	in.Write(sum[:])
	r := h.goSSH(t, h.bobKey.Signer, "git-receive-pack 'myapp'", in.String())
	if r.Code == 0 && strings.Contains(r.Stdout, "ng ") {
		r.Code = 1
	}
	return r
}

// goSSH runs command with the Go SSH client, which sends bytes OpenSSH's
// command line cannot hold (NUL).
func (h *hostile) goSSH(t *testing.T, signer gossh.Signer, command, stdin string) receivertest.Result {
	t.Helper()
	client := dialGo(t, h.srv.Addr, signer)
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	sess.Stdin = strings.NewReader(stdin)
	done := make(chan error, 1)
	go func() { done <- sess.Run(command) }()
	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%q did not finish", command)
	}
	r := receivertest.Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *gossh.ExitError
	switch {
	case errors.As(runErr, &exitErr):
		r.Code = exitErr.ExitStatus()
	case runErr != nil:
		t.Fatalf("%q: %v", command, runErr)
	}
	return r
}

// forward runs `ssh -L` (or -D) to the server's own SSH port with
// `keys add` as the command, which waits for stdin: while it waits, a
// connection to the forwarded port must not reach the server's banner;
// then stdin is closed and keys add fails for want of a key.
func (h *hostile) forward(t *testing.T, dynamic bool) receivertest.Result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := ln.Addr().String()
	ln.Close()
	argv := h.sshArgv(h.aliceKey, "INFO") // INFO: ssh says "open failed"
	if dynamic {
		argv = append(argv, "-D", local)
	} else {
		argv = append(argv, "-L", local+":127.0.0.1:"+h.srv.Port())
	}
	argv = append(argv, "-o", "ExitOnForwardFailure=yes", "-p", h.srv.Port(), "git@"+h.srv.Host(), "keys", "add", "zed", "--admin")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + h.alice.Home}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err = net.Dial("tcp", local); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh never listened on %s: %v\n%s", local, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if dynamic {
		// SOCKS5: no auth, then CONNECT 127.0.0.1:PORT.
		port, _ := strconv.Atoi(h.srv.Port())
		req := []byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 0}
		binary.BigEndian.PutUint16(req[len(req)-2:], uint16(port))
		_, _ = conn.Write(req)
	}
	got, _ := io.ReadAll(conn)
	conn.Close()
	if dynamic && len(got) >= 4 && got[2] == 5 && got[3] == 0 {
		t.Errorf("SOCKS CONNECT through the server succeeded: %q", got)
	}
	if bytes.Contains(got, []byte("SSH-2.0")) {
		t.Errorf("the forwarded connection reached the server: %q", got)
	}
	stdin.Close()
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err = <-waitErr:
	case <-time.After(30 * time.Second):
		t.Fatalf("ssh did not exit\n%s", stderr.String())
	}
	r := receivertest.Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		r.Code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// sshArgv is an ssh command line for key with the given log level
// (receivertest's is fixed at ERROR, which hides "open failed").
func (h *hostile) sshArgv(key receivertest.Key, logLevel string) []string {
	return []string{"ssh", "-F", "/dev/null", "-i", key.Path,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + h.knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "ConnectTimeout=10", "-o", "LogLevel=" + logLevel}
}

// run runs argv in dir as bob would (bob's HOME and identity for git), with
// extra environment.
func (h *hostile) run(t *testing.T, argv []string, dir string, extra []string) receivertest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(h.bob.GitCmd(ctx, dir).Env, extra...) // bob's environment, and extra
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := receivertest.Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		r.Code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	return r
}

// fileState is what a snapshot records of one path.
type fileState struct {
	mode  fs.FileMode
	size  int64
	mtime time.Time
}

// snapshot records every path under the watched directories.
func (h *hostile) snapshot(t *testing.T) map[string]fileState {
	t.Helper()
	snap := map[string]fileState{}
	for _, root := range h.watched {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			snap[p] = fileState{info.Mode(), info.Size(), info.ModTime()}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// assertUntouched: no file outside the data dir appeared, changed or went,
// and no payload ran.
func (h *hostile) assertUntouched(t *testing.T, before map[string]fileState) {
	t.Helper()
	after := h.snapshot(t)
	for p, st := range after {
		if old, ok := before[p]; !ok {
			t.Errorf("%s appeared outside the data dir", p)
		} else if old != st {
			t.Errorf("%s changed outside the data dir: %+v -> %+v", p, old, st)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s was removed", p)
		}
	}
	if matches, _ := filepath.Glob(h.pwned + "*"); len(matches) > 0 {
		t.Errorf("a payload ran: %v", matches)
	}
	if got := h.cwdEntries(t); !slices.Equal(got, h.cwdTop) {
		t.Errorf("the server's working directory %s changed: %v -> %v", h.cwd, h.cwdTop, got)
	}
}

// assertDataDir: the data dir holds the one app deployed on purpose, with
// only its main branch, one instance, and no leftover quarantine.
func (h *hostile) assertDataDir(t *testing.T) {
	t.Helper()
	if got := dirNames(t, h.data); !slices.Equal(got, h.dataTop) {
		t.Errorf("data dir entries %v, want %v", got, h.dataTop)
	}
	for dir, want := range map[string][]string{
		"repos":                 {"myapp.git"},
		"releases":              {"myapp"},
		"releases/myapp":        {"production"},
		"local-node":            {"myapp"},
		"local-node/myapp":      {"production"},
		"repos/myapp.git/refs":  {"heads", "tags"},
		"repos/myapp.git/hooks": {"pre-receive"},
	} {
		if got := dirNames(t, filepath.Join(h.data, dir)); !slices.Equal(got, want) {
			t.Errorf("%s holds %v, want %v", dir, got, want)
		}
	}
	out, err := exec.Command("git", "--git-dir", filepath.Join(h.data, "repos", "myapp.git"), "for-each-ref", "--format=%(refname) %(objectname)").Output()
	if want := "refs/heads/main " + h.main; err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("myapp's refs: %q, %v; want only %s", out, err, want)
	}
	for _, pattern := range []string{"incoming-*", "tmp_objdir*", "tmp_pack_*"} {
		if m, _ := filepath.Glob(filepath.Join(h.data, "repos", "myapp.git", "objects", pattern)); len(m) > 0 {
			t.Errorf("quarantine left behind: %v", m)
		}
	}
}

// assertServes: another client is still served.
func (h *hostile) assertServes(t *testing.T) {
	t.Helper()
	if r := h.bob.SSH(t, "", nil, "version"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "gitreceive ") {
		t.Fatalf("the server stopped serving: %s", r)
	}
}

// assertDeploys: a deployer still pushes a change live, and the command
// side answers.
func (h *hostile) assertDeploys(t *testing.T) {
	t.Helper()
	h.bob.Commit(t, h.work, "still deploys", map[string]string{"app.py": receivertest.App("myapp", nil)["app.py"] + "# " + t.Name() + "\n"})
	r := h.bob.Git(t, h.work, "push", h.bob.URL("myapp"), "main")
	if r.Code != 0 || !strings.Contains(r.Stderr, "(main) is live on 1 node") {
		t.Fatalf("bob can no longer deploy: %s", r)
	}
	h.main = strings.TrimSpace(h.bob.MustGit(t, h.work, "rev-parse", "HEAD").Stdout)
	if r := h.alice.SSH(t, "", nil, "releases", "myapp"); r.Code != 0 || !strings.Contains(r.Stdout, "bob") {
		t.Fatalf("releases: %s", r)
	}
	// Of the client's environment, GIT_PROTOCOL does reach git.
	r = h.goSSHEnv(t, "GIT_PROTOCOL", "version=2", "git-upload-pack 'myapp'", "0000")
	if r.Code != 0 || !strings.Contains(r.Stdout, "version 2") {
		t.Fatalf("GIT_PROTOCOL=version=2 did not reach git: %s", r)
	}
	h.assertDataDir(t)
}

// goSSHEnv is goSSH with one environment variable set on the session.
func (h *hostile) goSSHEnv(t *testing.T, name, value, command, stdin string) receivertest.Result {
	t.Helper()
	client := dialGo(t, h.srv.Addr, h.bobKey.Signer)
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Setenv(name, value); err != nil {
		t.Fatalf("setenv %s: %v", name, err)
	}
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr, sess.Stdin = &stdout, &stderr, strings.NewReader(stdin)
	err = sess.Run(command)
	r := receivertest.Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *gossh.ExitError
	if errors.As(err, &exitErr) {
		r.Code = exitErr.ExitStatus()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// cwdEntries lists the test's (and so the server's) working directory,
// .go files aside (other people edit those while tests run).
func (h *hostile) cwdEntries(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, n := range dirNames(t, h.cwd) {
		if !strings.HasSuffix(n, ".go") {
			names = append(names, n)
		}
	}
	return names
}

// lineWith is the line of out holding want ("" when none does), cut to a
// readable length.
func lineWith(out, want string) string {
	i := strings.Index(out, want)
	if i < 0 {
		return ""
	}
	start := strings.LastIndexByte(out[:i], '\n') + 1
	end := len(out)
	if j := strings.IndexByte(out[i:], '\n'); j >= 0 {
		end = i + j
	}
	line := strings.TrimSpace(out[start:end])
	if len(line) > 240 {
		line = line[:240] + "..."
	}
	return strconv.QuoteToASCII(line)
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// binaryJunk is n deterministic bytes of everything, NUL included.
func binaryJunk(n int) string {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return string(b)
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "k%d = v\n", i)
	}
	return b.String()
}

func manyFiles(n, size int) map[string]string {
	files := map[string]string{}
	for i := 0; i < n; i++ {
		files[fmt.Sprintf("data/f%03d.bin", i)] = binaryJunk(size)[:size-8] + fmt.Sprintf("%08d", i)
	}
	return files
}

// sshKeygen makes a key with ssh-keygen ARGS and returns its public line.
func sshKeygen(t *testing.T, args ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key")
	args = append([]string{"-q", "-N", "", "-C", "zed", "-f", path}, args...)
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return string(pub)
}

// certificate is an ed25519 user certificate signed by a fresh CA.
func certificate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"ca", "user"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, name)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command("ssh-keygen", "-q", "-s", filepath.Join(dir, "ca"), "-I", "zed", "-n", "git", filepath.Join(dir, "user.pub")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -s: %v\n%s", err, out)
	}
	cert, err := os.ReadFile(filepath.Join(dir, "user-cert.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return string(cert)
}
