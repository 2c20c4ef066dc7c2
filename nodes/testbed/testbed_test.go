//go:build e2e

package testbed_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// clientKey makes a fresh SSH client key and its authorized_keys line.
func clientKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(private)
	if err != nil {
		t.Fatal(err)
	}
	return signer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
}

func dialNode(t *testing.T, node *testbed.Node, signer ssh.Signer) *ssh.Client {
	t.Helper()
	client, err := ssh.Dial("tcp", net.JoinHostPort(node.IP, "22"), &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(node.HostKey),
		Timeout:         5 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh to %s (%s): %v", node.Name, node.IP, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func runSSH(t *testing.T, client *ssh.Client, command string) string {
	t.Helper()
	session, err := client.NewSession()
	if err != nil {
		t.Fatalf("ssh session: %v", err)
	}
	defer session.Close()
	var stderr bytes.Buffer
	session.Stderr = &stderr
	out, err := session.Output(command)
	if err != nil {
		t.Fatalf("ssh %q: %v: %s", command, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func execNode(t *testing.T, bed *testbed.Bed, node *testbed.Node, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := bed.Exec(ctx, node, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func TestTwoNodes(t *testing.T) {
	signer, authorized := clientKey(t)
	workDir := t.TempDir()
	bed := testbed.New(t, testbed.Options{
		Prefix:         "tbt",
		Subnet:         "10.77.201.0/24",
		Count:          2,
		AuthorizedKeys: []string{authorized},
		WorkDir:        workDir,
	})
	if len(bed.Nodes) != 2 {
		t.Fatalf("got %d nodes, want 2", len(bed.Nodes))
	}
	n1, n2 := bed.Nodes[0], bed.Nodes[1]
	if n1.IP != "10.77.201.2" || n2.IP != "10.77.201.3" {
		t.Errorf("node IPs %s, %s; want 10.77.201.2, 10.77.201.3", n1.IP, n2.IP)
	}

	clients := map[*testbed.Node]*ssh.Client{}
	for _, n := range bed.Nodes {
		clients[n] = dialNode(t, n, signer)
		if got := runSSH(t, clients[n], "hostname"); got != n.Name {
			t.Errorf("hostname on %s = %q", n.Name, got)
		}
	}

	for _, dir := range []string{"/etc", "/usr/local/lib"} {
		t.Run(dir+" is copy-on-write", func(t *testing.T) {
			marker := dir + "/testbed-marker"
			runSSH(t, clients[n1], "echo node1 > "+marker)
			if got := execNode(t, bed, n1, "cat", marker); got != "node1" {
				t.Errorf("marker on %s = %q", n1.Name, got)
			}
			if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("marker reached the host's %s (stat: %v)", dir, err)
			}
			if got := execNode(t, bed, n2, "sh", "-c", "test -e "+marker+" && echo present || echo absent"); got != "absent" {
				t.Errorf("marker on %s: %s", n2.Name, got)
			}
		})
	}

	t.Run("srv is private", func(t *testing.T) {
		runSSH(t, clients[n1], "echo x > /srv/testbed-private")
		if got := runSSH(t, clients[n2], "test -e /srv/testbed-private && echo present || echo absent"); got != "absent" {
			t.Errorf("node 1's /srv file on %s: %s", n2.Name, got)
		}
		if _, err := os.Stat("/srv/testbed-private"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("node 1's /srv file reached the host (stat: %v)", err)
		}
	})

	t.Run("node reaches node", func(t *testing.T) {
		execNode(t, bed, n1, "timeout", "5", "bash", "-c", "exec 3<>/dev/tcp/"+n2.IP+"/22")
	})

	t.Run("Exec failure names node and command", func(t *testing.T) {
		_, err := bed.Exec(t.Context(), n1, "cat", "/no-such-file")
		want := "testbed: exec on " + n1.Name + ": cat /no-such-file: exit status 1: cat: /no-such-file: No such file or directory"
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})

	t.Run("known_hosts pins host keys", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(path, []byte(bed.KnownHosts()), 0o644); err != nil {
			t.Fatal(err)
		}
		callback, err := knownhosts.New(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range bed.Nodes {
			addr := &net.TCPAddr{IP: net.ParseIP(n.IP), Port: 22}
			if err := callback(addr.String(), addr, n.HostKey); err != nil {
				t.Errorf("known_hosts rejects %s's key: %v", n.Name, err)
			}
		}
		addr := &net.TCPAddr{IP: net.ParseIP(n1.IP), Port: 22}
		if err := callback(addr.String(), addr, n2.HostKey); err == nil {
			t.Errorf("known_hosts accepts %s's key for %s", n2.Name, n1.Name)
		}
	})

	t.Run("init reaps orphans and outlives sshd", func(t *testing.T) {
		// The subshell exits at once, orphaning sleep to the node's init,
		// which must reap it when it exits.
		execNode(t, bed, n2, "sh", "-c", "(sleep 0.2 &)")
		execNode(t, bed, n2, "sh", "-c", "kill $(cat /run/sshd.pid)")
		time.Sleep(500 * time.Millisecond)
		states := execNode(t, bed, n2, "ps", "-e", "-o", "stat=,comm=")
		if strings.Contains(states, "Z") {
			t.Errorf("zombies on %s:\n%s", n2.Name, states)
		}
		// The listener is gone (sessions of open connections may remain) ...
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(n2.IP, "22"), 2*time.Second)
		if err == nil {
			conn.Close()
			t.Errorf("sshd on %s still accepts connections after being killed", n2.Name)
		}
		// ... but the node is still there.
		if got := execNode(t, bed, n2, "hostname"); got != n2.Name {
			t.Errorf("hostname on %s after sshd died = %q", n2.Name, got)
		}
	})

	if t.Failed() {
		return
	}
	pids := []int{n1.PID, n2.PID}
	if err := bed.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertGone(t, "tbt", workDir, pids)
	if err := bed.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// assertGone checks that nothing of a closed bed is left on the machine.
func assertGone(t *testing.T, prefix, workDir string, pids []int) {
	t.Helper()
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			t.Errorf("namespace %s left", e.Name())
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, prefix+"-") {
			t.Errorf("link %s left", i.Name)
		}
	}
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("init pid %d still exists", pid)
		}
	}
	// Node mounts live in their own mount namespaces: look at every
	// process's, not just ours.
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		mountinfo, err := os.ReadFile(filepath.Join("/proc", p.Name(), "mountinfo"))
		if err != nil {
			continue
		}
		if bytes.Contains(mountinfo, []byte(workDir)) {
			t.Errorf("process %s still has a mount under %s", p.Name(), workDir)
		}
	}
	if left, _ := os.ReadDir(workDir); len(left) != 0 {
		t.Errorf("WorkDir %s not emptied: %d entries left", workDir, len(left))
	}
	// The nodes' cgroups, in every v1 hierarchy or in the v2 one.
	for _, pattern := range []string{"/sys/fs/cgroup/*/gitreceive-testbed/" + prefix + "-*", "/sys/fs/cgroup/gitreceive-testbed/" + prefix + "-*"} {
		left, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range left {
			t.Errorf("cgroup %s left", dir)
		}
	}
}

func TestCleanupStale(t *testing.T) {
	testbed.Require(t)
	_, authorized := clientKey(t)
	workDir := t.TempDir()
	if err := testbed.CleanupStale("tbs"); err != nil {
		t.Fatal(err)
	}
	// Start without Close, as a crashed run would leave it.
	bed, err := testbed.Start(t.Context(), testbed.Options{
		Prefix: "tbs", Subnet: "10.77.205.0/24", Count: 2,
		AuthorizedKeys: []string{authorized}, WorkDir: workDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bed.Close() })
	// A busy cgroup the node made, two levels down, must go too.
	startInNestedCgroup(t, bed, bed.Nodes[0], hostCgroupFiles())
	if err := testbed.CleanupStale("tbs"); err != nil {
		t.Fatalf("CleanupStale: %v", err)
	}
	if err := bed.Close(); err != nil {
		t.Fatalf("Close after CleanupStale: %v", err)
	}
	assertGone(t, "tbs", workDir, []int{bed.Nodes[0].PID, bed.Nodes[1].PID})
}

func TestStartFailureTearsDown(t *testing.T) {
	testbed.Require(t)
	_, authorized := clientKey(t)
	if err := testbed.CleanupStale("tbf"); err != nil {
		t.Fatal(err)
	}
	// A directory of the caller's in the way of node 2 makes Start fail after
	// node 1 is up; Start must undo node 1 and leave the caller's dir alone.
	workDir := t.TempDir()
	callers := filepath.Join(workDir, "tbf-2")
	if err := os.Mkdir(callers, 0o755); err != nil {
		t.Fatal(err)
	}
	bed, err := testbed.Start(t.Context(), testbed.Options{
		Prefix: "tbf", Subnet: "10.77.206.0/24", Count: 2,
		AuthorizedKeys: []string{authorized}, WorkDir: workDir,
	})
	if err == nil {
		bed.Close()
		t.Fatal("Start succeeded despite a directory in the way")
	}
	t.Logf("Start error (expected): %v", err)
	if !strings.Contains(err.Error(), "tbf-2") {
		t.Errorf("error does not name the node: %v", err)
	}
	if _, err := os.Stat(callers); err != nil {
		t.Errorf("caller's directory removed: %v", err)
	}
	if err := os.Remove(callers); err != nil {
		t.Fatal(err)
	}
	assertGone(t, "tbf", workDir, nil)
}

func TestConcurrentBeds(t *testing.T) {
	signer, authorized := clientKey(t)
	beds := []struct{ prefix, subnet string }{
		{"tbca", "10.77.202.0/24"},
		{"tbcb", "10.77.203.0/28"},
	}
	t.Run("group", func(t *testing.T) {
		for _, b := range beds {
			t.Run(b.prefix, func(t *testing.T) {
				t.Parallel()
				bed := testbed.New(t, testbed.Options{
					Prefix:         b.prefix,
					Subnet:         b.subnet,
					Count:          2,
					AuthorizedKeys: []string{authorized},
				})
				for _, n := range bed.Nodes {
					if got := runSSH(t, dialNode(t, n, signer), "hostname"); got != n.Name {
						t.Errorf("hostname on %s = %q", n.Name, got)
					}
				}
			})
		}
	})
}

func TestStartRejectsBadOptions(t *testing.T) {
	good := testbed.Options{Prefix: "tbx", Subnet: "10.77.204.0/24", Count: 1, WorkDir: t.TempDir()}
	cases := map[string]func(o *testbed.Options){
		"uppercase prefix":    func(o *testbed.Options) { o.Prefix = "TB" },
		"long prefix":         func(o *testbed.Options) { o.Prefix = "abcdefghijk" },
		"subnet outside":      func(o *testbed.Options) { o.Subnet = "192.168.1.0/24" },
		"subnet wider":        func(o *testbed.Options) { o.Subnet = "10.76.0.0/15" },
		"subnet not network":  func(o *testbed.Options) { o.Subnet = "10.77.204.5/24" },
		"subnet too small":    func(o *testbed.Options) { o.Subnet = "10.77.204.0/30"; o.Count = 2 },
		"zero nodes":          func(o *testbed.Options) { o.Count = 0 },
		"too many nodes":      func(o *testbed.Options) { o.Count = 201 },
		"no work dir":         func(o *testbed.Options) { o.WorkDir = "" },
		"work dir under /var": func(o *testbed.Options) { o.WorkDir = "/var/tmp/x" },
		"bad key":             func(o *testbed.Options) { o.AuthorizedKeys = []string{"ssh-ed25519 nonsense"} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			opt := good
			mutate(&opt)
			if bed, err := testbed.Start(t.Context(), opt); err == nil {
				bed.Close()
				t.Fatalf("Start(%+v) succeeded", opt)
			}
		})
	}
}
