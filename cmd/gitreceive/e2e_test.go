//go:build e2e

package main_test

// End-to-end tests: the built gitreceive binary serving on a loopback port,
// driven by the real OpenSSH client and the real git client.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

func (f *fixture) repoEntries(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.data, "repos"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestPushThenIncrementalPushThenClone(t *testing.T) {
	f := newFixture(t)
	work := f.alice.WorkTree(t, receivertest.App("myapp", map[string]string{"README": "hello\n"}))
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("myapp"))

	r := f.alice.MustGit(t, work, "push", "silver", "main")
	head := strings.TrimSpace(f.alice.MustGit(t, work, "rev-parse", "--short=7", "HEAD").Stdout)
	mustContain(t, r.Stderr, "remote: -----> myapp: deploying main ("+head+") by alice")
	if _, err := os.Stat(filepath.Join(f.data, "repos", "myapp.git", "hooks", "pre-receive")); err != nil {
		t.Fatalf("first push did not create the repository with its hook: %v", err)
	}

	// The second push sends a thin pack against the first: the case
	// go-git's server side got wrong (DESIGN.md decision 1).
	f.alice.Commit(t, work, "second", map[string]string{"app.py": "print(2)\n", "lib/x.py": "x = 1\n"})
	r = f.alice.MustGit(t, work, "push", "silver", "main")
	head = strings.TrimSpace(f.alice.MustGit(t, work, "rev-parse", "--short=7", "HEAD").Stdout)
	mustContain(t, r.Stderr, "remote: -----> myapp: deploying main ("+head+") by alice")

	clone := filepath.Join(t.TempDir(), "clone")
	f.bob.MustGit(t, "", "clone", "-q", f.bob.URL("myapp"), clone)
	want := f.alice.MustGit(t, work, "rev-parse", "HEAD^{tree}").Stdout
	got := f.bob.MustGit(t, clone, "rev-parse", "HEAD^{tree}").Stdout
	if got != want {
		t.Fatalf("clone tree %s, pushed tree %s", got, want)
	}
	data, err := os.ReadFile(filepath.Join(clone, "app.py"))
	if err != nil || string(data) != "print(2)\n" {
		t.Fatalf("cloned app.py = %q, %v", data, err)
	}

	// Every form git sends for the repository path reaches the same repo.
	for _, url := range []string{
		fmt.Sprintf("ssh://git@127.0.0.1:%s/myapp.git", f.srv.Port()),
		fmt.Sprintf("ssh://git@127.0.0.1:%s/~/myapp", f.srv.Port()),
	} {
		r := f.alice.MustGit(t, work, "ls-remote", url, "refs/heads/main")
		mustContain(t, r.Stdout, strings.TrimSpace(f.alice.MustGit(t, work, "rev-parse", "HEAD").Stdout))
	}
}

func TestUnknownKeyIsRefused(t *testing.T) {
	f := newFixture(t)
	r := f.unauthorized.SSH(t, "", nil, "version")
	if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied (publickey)") {
		t.Fatalf("unknown key: %s", r)
	}
	work := f.unauthorized.WorkTree(t, receivertest.App("myapp", nil))
	if r := f.unauthorized.Git(t, work, "push", f.unauthorized.URL("myapp"), "main"); r.Code == 0 {
		t.Fatalf("push with unknown key succeeded: %s", r)
	}
	if len(f.repoEntries(t)) != 0 {
		t.Fatalf("refused push created %v", f.repoEntries(t))
	}
}

func TestDeployerOnlyReachesGrantedApps(t *testing.T) {
	f := newFixture(t)
	work := f.bob.WorkTree(t, receivertest.App("myapp", nil))
	f.bob.MustGit(t, work, "push", f.bob.URL("myapp"), "main")

	// Exact match only: neither a prefix nor an extension of a granted name.
	for _, app := range []string{"other", "myap", "myapp2"} {
		r := f.bob.Git(t, work, "push", f.bob.URL(app), "main")
		if r.Code == 0 {
			t.Fatalf("deployer pushed to %s: %s", app, r)
		}
		mustContain(t, r.Stderr, fmt.Sprintf("key bob may not access app %q", app))
	}
	r := f.bob.SSH(t, "", nil, "keys", "list")
	if r.Code != 1 {
		t.Fatalf("deployer ran keys list: %s", r)
	}
	mustContain(t, r.Stderr, `"keys" is for admins only`)
	if got := f.repoEntries(t); len(got) != 1 || got[0] != "myapp.git" {
		t.Fatalf("repos = %v, want only myapp.git", got)
	}
}

func TestAdminManagesKeysOverSSH(t *testing.T) {
	f := newFixture(t)
	carol := receivertest.NewKey(t, f.keysDir, "carol")
	carolClient := receivertest.NewClient(t, f.srv.Server, carol)
	if r := carolClient.SSH(t, "", nil, "version"); r.Code != 255 {
		t.Fatalf("carol connected before being added: %s", r)
	}

	r := f.alice.SSH(t, carol.PubLine+"\n", nil, "keys", "add", "carol", "--apps", "blog,myapp")
	if r.Code != 0 {
		t.Fatalf("keys add: %s", r)
	}
	mustContain(t, r.Stdout, "added deployer key carol")
	r = f.alice.SSH(t, "", nil, "keys", "list")
	mustContain(t, r.Stdout, "carol")
	mustContain(t, r.Stdout, gossh.FingerprintSHA256(carol.Signer.PublicKey()))
	mustContain(t, r.Stdout, "blog,myapp")

	work := carolClient.WorkTree(t, receivertest.App("blog", nil))
	carolClient.MustGit(t, work, "push", carolClient.URL("blog"), "main")

	// Bad input is refused and changes nothing.
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{carol.PubLine, []string{"keys", "add", "carol2", "--apps", "blog"}, "already"},
		{"", []string{"keys", "add", "dave", "--admin"}, "no public key"},
		{"ssh-ed25519 AAAA garbage", []string{"keys", "add", "dave", "--admin"}, ""},
		{carol.PubLine, []string{"keys", "add", "dave"}, "--admin, or --apps"},
		{carol.PubLine, []string{"keys", "add", "dave", "--apps", "../x"}, ""},
		{"", []string{"keys", "remove", "nobody"}, "nobody"},
		{"", []string{"keys", "frobnicate"}, "unknown keys command"},
	} {
		r := f.alice.SSH(t, tc.stdin, nil, tc.args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%v: want exit 1 mentioning %q, got %s", tc.args, tc.want, r)
		}
	}

	r = f.alice.SSH(t, "", nil, "keys", "remove", "carol")
	if r.Code != 0 {
		t.Fatalf("keys remove: %s", r)
	}
	if r := carolClient.SSH(t, "", nil, "version"); r.Code != 255 {
		t.Fatalf("removed key still connects: %s", r)
	}
}

func TestBadAppNamesTouchNothing(t *testing.T) {
	f := newFixture(t)
	for _, name := range []string{"../x", "a;b", "A", "", strings.Repeat("a", 200), "my app", "/etc/passwd", "x/../../y", "-rf", "a\x01b"} {
		for _, cmd := range []string{"git-receive-pack", "git-upload-pack"} {
			r := f.alice.SSH(t, "", nil, fmt.Sprintf("%s '%s'", cmd, name))
			if r.Code != 1 || !strings.Contains(r.Stderr, "invalid app name") {
				t.Errorf("%s %q: want exit 1 and \"invalid app name\", got %s", cmd, name, r)
			}
		}
	}
	if got := f.repoEntries(t); len(got) != 0 {
		t.Fatalf("bad names created %v", got)
	}
	// git itself, given a bad URL, gets the same answer.
	work := f.alice.WorkTree(t, receivertest.App("myapp", nil))
	r := f.alice.Git(t, work, "push", f.alice.URL("Bad_Name"), "main")
	if r.Code == 0 {
		t.Fatalf("push to Bad_Name succeeded")
	}
	mustContain(t, r.Stderr, "invalid app name")
}

func TestShellsPTYsAndForwardingAreRefused(t *testing.T) {
	f := newFixture(t)
	r := f.alice.SSH(t, "", nil, "sh")
	if r.Code != 1 {
		t.Fatalf("sh: %s", r)
	}
	mustContain(t, r.Stderr, `unknown command "sh"; try "help"`)

	r = f.alice.SSH(t, "", []string{"-T"})
	if r.Code != 1 {
		t.Fatalf("no command: %s", r)
	}
	mustContain(t, r.Stderr, "there is no shell here")

	r = f.alice.SSH(t, "", []string{"-tt"}, "git-upload-pack", "myapp")
	if r.Code != 1 || !strings.Contains(r.Stdout+r.Stderr, "does not run on a terminal") {
		t.Fatalf("git with a PTY: %s", r)
	}

	// Remote forwarding: with ExitOnForwardFailure ssh gives up when refused.
	r = f.alice.SSH(t, "", []string{"-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:9"}, "version")
	if r.Code != 255 || !strings.Contains(r.Stderr, "forwarding failed") {
		t.Fatalf("remote forwarding: %s", r)
	}

	// Local forwarding and unknown channel types, with the Go client.
	client := dialGo(t, f.srv.Addr, f.aliceKey.Signer)
	if conn, err := client.Dial("tcp", "127.0.0.1:22"); err == nil {
		conn.Close()
		t.Fatal("direct-tcpip channel was accepted")
	}
	if _, _, err := client.OpenChannel("x11", nil); err == nil {
		t.Fatal("x11 channel was accepted")
	}
	// sftp and other subsystems.
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem("sftp"); err == nil {
		t.Fatal("sftp subsystem was accepted")
	}
}

func TestExitStatusReachesClient(t *testing.T) {
	f := newFixture(t)
	if r := f.alice.SSH(t, "", nil, "version"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "gitreceive ") {
		t.Fatalf("version: %s", r)
	}
	// Quoting follows sh: one argument with a space in it.
	r := f.alice.SSH(t, "", nil, `help "no such"`)
	if r.Code != 1 {
		t.Fatalf("failing command exit %d", r.Code)
	}
	mustContain(t, r.Stderr, `unknown command "no such"`)
	if r := f.alice.SSH(t, "", nil, `help 'unterminated`); r.Code != 1 {
		t.Fatalf("unparsable command: %s", r)
	}
	r = f.alice.SSH(t, "", nil, "help")
	if r.Code != 0 || !strings.Contains(r.Stdout, "keys") || !strings.Contains(r.Stdout, "version") {
		t.Fatalf("help: %s", r)
	}
	if r := f.alice.SSH(t, "", nil, "nodes", "list"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "NAME") {
		t.Fatalf("nodes list: %s", r)
	}
	if r := f.alice.SSH(t, "", nil, "nodes", "add", "web1", "10.77.0.9"); r.Code != 1 || !strings.Contains(r.Stderr, "usage: nodes list") {
		t.Fatalf("nodes add over SSH: %s", r)
	}
	if r := f.bob.SSH(t, "", nil, "nodes", "list"); r.Code != 1 {
		t.Fatalf("deployer ran nodes list: %s", r)
	}
	if r := f.bob.SSH(t, "", nil, "help"); strings.Contains(r.Stdout, "keys") {
		t.Fatalf("help shows admin commands to a deployer:\n%s", r.Stdout)
	}
	// upload-pack on an app that was never pushed.
	r = f.alice.SSH(t, "", nil, "git-upload-pack", "'nothing-here'")
	if r.Code != 1 {
		t.Fatalf("upload-pack of missing app: %s", r)
	}
	mustContain(t, r.Stderr, `app "nothing-here" does not exist yet`)
}

// TestAuthBypassRegression: a client offers the admin's public key, which the
// server accepts as a candidate, but cannot sign with it; it then
// authenticates with the deployer's key. The session must have the
// deployer's rights only (CVE-2024-45337 class).
func TestAuthBypassRegression(t *testing.T) {
	f := newFixture(t)
	offerOnly := &unprovenSigner{pub: f.aliceKey.Signer.PublicKey()}
	thenBob := true
	cfg := &gossh.ClientConfig{
		User: "git",
		// The server accepts alice's key as a candidate; the client cannot
		// sign with it, so it moves on and proves bob's key instead.
		Auth: []gossh.AuthMethod{gossh.PublicKeys(offerOnly)},
		AuthCallback: func(ac *gossh.ClientAuthContext) (gossh.AuthMethod, error) {
			if thenBob && slices.Contains(ac.TriedMethods, "publickey") {
				thenBob = false
				return gossh.PublicKeys(f.bobKey.Signer), nil
			}
			return nil, nil
		},
		HostKeyCallback: gossh.FixedHostKey(f.srv.HostKey(t)),
		Timeout:         10 * time.Second,
	}
	client, err := gossh.Dial("tcp", f.srv.Addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.CombinedOutput("keys list")
	if err == nil {
		t.Fatalf("keys list succeeded after offering the admin key:\n%s", out)
	}
	if !offerOnly.accepted {
		t.Fatal("the server never accepted alice's key as a candidate; the scenario did not happen")
	}
	if !strings.Contains(string(out), `"keys" is for admins only`) {
		t.Fatalf("unexpected output: %s", out)
	}
	// The log line may land just after the client saw the exit status.
	logged := regexp.MustCompile(`"key":"bob".*"command":"keys"`)
	for deadline := time.Now().Add(5 * time.Second); !logged.MatchString(f.srv.Logs()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("server did not log the session as bob:\n%s", f.srv.Logs())
		}
	}
}

// unprovenSigner offers a public key it holds no private key for.
// The client asks for a signature only after the server accepted the key.
type unprovenSigner struct {
	pub      gossh.PublicKey
	accepted bool
}

func (s *unprovenSigner) PublicKey() gossh.PublicKey { return s.pub }
func (s *unprovenSigner) Sign(io.Reader, []byte) (*gossh.Signature, error) {
	s.accepted = true
	return nil, errors.New("no private key")
}

func dialGo(t *testing.T, addr string, signer gossh.Signer) *gossh.Client {
	t.Helper()
	client, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User:            "git",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), // the host key is pinned in the OpenSSH tests
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func TestHookRefusesWithoutTheDaemon(t *testing.T) {
	f := newFixture(t)
	work := f.alice.WorkTree(t, receivertest.App("myapp", nil))
	f.alice.MustGit(t, work, "push", f.alice.URL("myapp"), "main")
	f.alice.Commit(t, work, "local", map[string]string{"a": "b"})

	// Someone on the server pushes straight into the repository.
	repo := filepath.Join(f.data, "repos", "myapp.git")
	r := f.alice.Git(t, work, "push", repo, "main")
	if r.Code == 0 {
		t.Fatalf("local push bypassed the daemon: %s", r)
	}
	mustContain(t, r.Stderr, "accepts pushes only through the gitreceive SSH server")

	// The relay itself, with a socket but a forged token.
	cmd := exec.Command(bin, "hook", "pre-receive")
	cmd.Env = []string{
		"GITRECEIVE_HOOK_SOCKET=" + filepath.Join(f.data, "run", "hook.sock"),
		"GITRECEIVE_PUSH_TOKEN=forged",
	}
	cmd.Stdin = strings.NewReader(strings.Repeat("0", 40) + " " + strings.Repeat("1", 40) + " refs/heads/main\n")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("hook with forged token accepted: %s", out)
	}
	mustContain(t, string(out), "push token is not valid")
}

func TestHostKeyIsKeptAndNeverReplaced(t *testing.T) {
	receivertest.RequireTools(t, "ssh-keygen")
	data := t.TempDir()
	first := receivertest.StartProcess(t, bin, data)
	key1 := gossh.FingerprintSHA256(first.HostKey(t))
	st, err := os.Stat(filepath.Join(data, "ssh_host_ed25519_key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("host key mode %v, %v", st.Mode(), err)
	}
	mustContain(t, first.Logs(), "gitreceive keys --data "+data+" add NAME --admin")
	second := receivertest.StartProcess(t, bin, data)
	if key2 := gossh.FingerprintSHA256(second.HostKey(t)); key2 != key1 {
		t.Fatalf("host key changed across restarts: %s -> %s", key1, key2)
	}

	if err := os.WriteFile(filepath.Join(data, "ssh_host_ed25519_key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data", data).CombinedOutput()
	if err == nil {
		t.Fatalf("serve started with a corrupt host key:\n%s", out)
	}
	mustContain(t, string(out), "is unreadable")
	if b, _ := os.ReadFile(filepath.Join(data, "ssh_host_ed25519_key")); string(b) != "garbage" {
		t.Fatal("corrupt host key was replaced")
	}
}

func TestLocalKeysCLI(t *testing.T) {
	receivertest.RequireTools(t, "ssh-keygen")
	data, dir := t.TempDir(), t.TempDir()
	k := receivertest.NewKey(t, dir, "erin")
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// From a FILE argument, with GITRECEIVE_DATA instead of --data.
	cmd := exec.Command(bin, "keys", "add", "erin", "--apps", "shop", k.Path+".pub")
	cmd.Env = append(os.Environ(), "GITRECEIVE_DATA="+data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("keys add from file: %v\n%s", err, out)
	}
	out, err := run("", "keys", "--data", data, "list")
	if err != nil || !strings.Contains(out, "erin") || !strings.Contains(out, "shop") {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	// A private key is refused without echoing it.
	priv, _ := os.ReadFile(k.Path)
	out, err = run(string(priv), "keys", "--data", data, "add", "frank", "--admin")
	if err == nil || !strings.Contains(out, "private key") || strings.Contains(out, string(priv[40:80])) {
		t.Fatalf("private key: %v\n%s", err, out)
	}
	// Several keys at once are refused.
	k2 := receivertest.NewKey(t, dir, "gina")
	out, err = run(k.PubLine+"\n"+k2.PubLine+"\n", "keys", "--data", data, "add", "gina", "--admin")
	if err == nil || !strings.Contains(out, "one key at a time") {
		t.Fatalf("two keys: %v\n%s", err, out)
	}
	// Options are refused.
	out, err = run(`command="sh" `+k2.PubLine, "keys", "--data", data, "add", "gina", "--admin")
	if err == nil || !strings.Contains(out, "options") {
		t.Fatalf("key with options: %v\n%s", err, out)
	}
	fp := gossh.FingerprintSHA256(k.Signer.PublicKey())
	if out, err := run("", "keys", "--data", data, "remove", fp); err != nil {
		t.Fatalf("remove by fingerprint: %v\n%s", err, out)
	}
	if out, _ := run("", "keys", "--data", data, "list"); strings.Contains(out, "erin") {
		t.Fatalf("erin still listed:\n%s", out)
	}
}
