// Package receivertest drives a gitreceive server in tests with the real
// OpenSSH client and the real git client, as a person would.
package receivertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitreceive/gitreceive/receiver/cmdline"
)

// RequireTools skips the test when a tool is missing, except under CI=true,
// where a missing tool fails the run: CI must never pass by skipping.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed; `make test` installs it", tool)
			}
			t.Skipf("%s is not installed (run `make test` to install it)", tool)
		}
	}
}

// RunWithBinary is a TestMain body: it builds cmd/gitreceive into a
// temporary directory, stores its path in *bin, runs the tests and cleans up.
func RunWithBinary(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "gitreceive-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = buildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func buildBinary(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "gitreceive")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/gitreceive")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building gitreceive: %v\n%s", err, out)
	}
	return bin, nil
}

// Key is an SSH client key made by the real ssh-keygen.
type Key struct {
	Name    string
	Path    string // private key file
	PubLine string // authorized_keys line
	Signer  gossh.Signer
}

// NewKey makes an ed25519 key pair in dir.
func NewKey(t testing.TB, dir, name string) Key {
	t.Helper()
	path := filepath.Join(dir, "id_"+name)
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	priv, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return Key{Name: name, Path: path, PubLine: strings.TrimSpace(string(pub)), Signer: signer}
}

// Server is a gitreceive server as the clients see it.
type Server struct {
	Addr    string // 127.0.0.1:PORT
	DataDir string
}

// Port is the server's TCP port.
func (s Server) Port() string {
	_, port, _ := net.SplitHostPort(s.Addr)
	return port
}

// Host is the server's address without the port.
func (s Server) Host() string {
	host, _, _ := net.SplitHostPort(s.Addr)
	return host
}

// HostKey reads the server's public host key from its data dir.
func (s Server) HostKey(t testing.TB) gossh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.DataDir, "ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return signer.PublicKey()
}

// Client is a person with a key, the real ssh and git, and their own HOME.
type Client struct {
	Server     Server
	Key        Key
	Home       string
	knownHosts string
}

// NewClient sets up HOME and a known_hosts file pinning the server's key.
func NewClient(t testing.TB, srv Server, key Key) *Client {
	t.Helper()
	home := t.TempDir()
	kh := filepath.Join(home, "known_hosts")
	line := fmt.Sprintf("[%s]:%s %s", srv.Host(), srv.Port(), gossh.MarshalAuthorizedKey(srv.HostKey(t)))
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return &Client{Server: srv, Key: key, Home: home, knownHosts: kh}
}

// TrustHost adds a known_hosts line for another host the client talks to.
func (c *Client) TrustHost(t testing.TB, line string) {
	t.Helper()
	f, err := os.OpenFile(c.knownHosts, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, strings.TrimSpace(line)); err != nil {
		t.Fatal(err)
	}
}

// sshArgs is the ssh command line without host, port and remote command;
// git takes the port from the URL.
func (c *Client) sshArgs() []string {
	return []string{"ssh", "-F", "/dev/null", "-i", c.Key.Path,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + c.knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"}
}

// SSHCommand is the ssh command line quoted for a shell, as GIT_SSH_COMMAND
// and rsync -e take it.
func (c *Client) SSHCommand() string {
	args := c.sshArgs()
	for i, a := range args {
		args[i] = cmdline.Quote(a)
	}
	return strings.Join(args, " ")
}

// Result is what a command printed and its exit code.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// SSH runs `ssh git@HOST REMOTE...` with stdin.
func (c *Client) SSH(t testing.TB, stdin string, sshOpts []string, remote ...string) Result {
	t.Helper()
	args := append(c.sshArgs(), "-p", c.Server.Port())
	args = append(args, sshOpts...)
	args = append(args, "git@"+c.Server.Host())
	args = append(args, remote...)
	return c.run(t, "", stdin, args...)
}

// URL is the remote URL of app.
func (c *Client) URL(app string) string {
	return fmt.Sprintf("ssh://git@%s/%s", c.Server.Addr, app)
}

// GitCmd prepares git ARGS in dir with this client's identity.
func (c *Client) GitCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = c.env()
	return cmd
}

// Git runs git ARGS in dir.
func (c *Client) Git(t testing.TB, dir string, args ...string) Result {
	t.Helper()
	return c.run(t, dir, "", append([]string{"git"}, args...)...)
}

// MustGit runs git ARGS in dir and fails the test on a non-zero exit.
func (c *Client) MustGit(t testing.TB, dir string, args ...string) Result {
	t.Helper()
	r := c.Git(t, dir, args...)
	if r.Code != 0 {
		t.Fatalf("git %s: %s", strings.Join(args, " "), r)
	}
	return r
}

func (c *Client) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + c.Home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_SSH_COMMAND=" + c.SSHCommand(),
		"GIT_AUTHOR_NAME=" + c.Key.Name, "GIT_AUTHOR_EMAIL=" + c.Key.Name + "@example.test",
		"GIT_COMMITTER_NAME=" + c.Key.Name, "GIT_COMMITTER_EMAIL=" + c.Key.Name + "@example.test",
		"LC_ALL=C",
	}
}

func (c *Client) run(t testing.TB, dir, stdin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = c.env()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("running %v: %v", args, err)
		}
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: code}
}

// WorkTree makes a git work tree with one commit on main holding files.
func (c *Client) WorkTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	c.MustGit(t, dir, "init", "-q", "-b", "main")
	c.Commit(t, dir, "initial", files)
	return dir
}

// Commit writes files into the work tree and commits them.
func (c *Client) Commit(t testing.TB, dir, msg string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.MustGit(t, dir, "add", "-A")
	c.MustGit(t, dir, "commit", "-q", "-m", msg)
}

// App returns the files of the smallest valid app named name; extra files
// are added or replace its own.
func App(name string, extra map[string]string) map[string]string {
	files := map[string]string{
		"app.ini": "[production]\napp_name = " + name + "\nrunner = app.py\n",
		"app.py":  "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'" + name + "']\n",
	}
	for k, v := range extra {
		files[k] = v
	}
	return files
}

// Process is a `gitreceive serve` child process.
type Process struct {
	Server
	bin string
	env []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	logs bytes.Buffer
}

// PID is the server process's id (for /proc/PID/status in benchmarks).
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Logs returns what the server logged so far (across restarts).
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// StartProcess runs `BIN serve --listen 127.0.0.1:0 --data DATA` and waits
// until it listens. It is stopped when the test ends.
func StartProcess(t testing.TB, bin, dataDir string, env ...string) *Process {
	t.Helper()
	p := &Process{Server: Server{Addr: "127.0.0.1:0", DataDir: dataDir}, bin: bin, env: env}
	p.start(t)
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", p.Logs())
		}
	})
	return p
}

// start runs the server and waits until it listens; the first start
// picks a port, a restart reuses it so that clients keep their remotes.
func (p *Process) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(p.bin, "serve", "--listen", p.Addr, "--data", p.DataDir)
	cmd.Env = append(os.Environ(), p.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			var entry struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Message == "listening" {
				addr <- entry.Addr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	select {
	case a := <-addr:
		p.Addr = a
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not start listening; log:\n%s", p.Logs())
	}
}

// Kill SIGKILLs the server, and nothing it started (git runs in its own
// process group, as when the daemon is killed for real), and waits for it
// to exit.
func (p *Process) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

// Terminate sends the server SIGTERM, as systemctl stop does: it drains
// (see receiver.Server.Shutdown). Exited says how it ended.
func (p *Process) Terminate() {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
}

// Exited waits up to limit for the server to exit and returns its exit
// status; false when it is still running.
func (p *Process) Exited(limit time.Duration) (code int, exited bool) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), true
	case <-time.After(limit):
		return 0, false
	}
}

// Restart starts the server again, after Kill or Exited, on the same data
// dir and address.
func (p *Process) Restart(t testing.TB) {
	t.Helper()
	p.start(t)
}

// stop interrupts the server and waits for it to exit (10 s, then kills it).
func (p *Process) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// AddKey adds a key to the server's store with the local CLI.
func AddKey(t testing.TB, bin, dataDir string, key Key, flags ...string) {
	t.Helper()
	args := append([]string{"keys", "--data", dataDir, "add", key.Name}, flags...)
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(key.PubLine + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gitreceive %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
