package receivertest

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/testbed"
)

// Fleet is a running receiver with an admin (alice) and count test-bed
// nodes added to it and set up (`nodes setup --all`: nginx and the uWSGI
// emperor running), for end-to-end tests in packages of their own.
type Fleet struct {
	Srv   *Process
	Alice *Client
	Bed   *testbed.Bed
	Data  string
}

// NewFleet starts a receiver (BIN serve) and a bed of count nodes with
// prefix and subnet (see testbed.Options), and sets the nodes up.
func NewFleet(t *testing.T, bin, prefix, subnet string, count int) *Fleet {
	t.Helper()
	testbed.Require(t)
	RequireTools(t, "git", "ssh", "ssh-keygen")
	RequireStack(t)
	f := &Fleet{Data: t.TempDir()}
	alice := NewKey(t, t.TempDir(), "alice")
	AddKey(t, bin, f.Data, alice, "--admin")
	f.Srv = StartProcess(t, bin, f.Data)
	f.Alice = NewClient(t, f.Srv.Server, alice)
	f.Bed = NewBed(t, bin, f.Data, prefix, subnet, count)
	return f
}

// NewBed starts count test nodes that trust the receiver of data dir data,
// adds them to its inventory and sets them up (`nodes setup --all`).
func NewBed(t *testing.T, bin, data, prefix, subnet string, count int) *testbed.Bed {
	t.Helper()
	line, err := nodes.OpenFleet(data).AuthorizedKeyLine()
	if err != nil {
		t.Fatal(err)
	}
	bed := testbed.New(t, testbed.Options{Prefix: prefix, Subnet: subnet, Count: count, AuthorizedKeys: []string{line}})
	for _, n := range bed.Nodes {
		if out, err := exec.Command(bin, "nodes", "--data", data, "add", n.Name, "root@"+n.IP).CombinedOutput(); err != nil {
			t.Fatalf("nodes add %s: %v\n%s", n.Name, err, out)
		}
	}
	if out, err := exec.Command(bin, "nodes", "--data", data, "setup", "--all").CombinedOutput(); err != nil {
		t.Fatalf("nodes setup: %v\n%s", err, out)
	}
	return bed
}

// HTTPResult is one answer of a node.
type HTTPResult struct {
	Code   int
	Header http.Header
	Body   string
}

// Do sends req to node (req's URL host is replaced by the node's address,
// req.Host is the virtual host) on a fresh connection, without following
// redirects; a connection error fails the test.
func Do(t testing.TB, node *testbed.Node, req *http.Request) HTTPResult {
	t.Helper()
	host := req.URL.Host
	req.URL.Host = node.IP
	if req.Host == "" {
		req.Host = host
	}
	client := http.Client{
		Timeout:       30 * time.Second,
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", req.Method, req.URL, node.Name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return HTTPResult{Code: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// CopyTree copies src to dst as `cp -rL` would (what the gitreceive
// rejections advise for a vendored tree), or as `cp -a` when keepLinks.
func CopyTree(t testing.TB, src, dst string, keepLinks bool) {
	t.Helper()
	flag := "-rL"
	if keepLinks {
		flag = "-a"
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", flag, strings.TrimSuffix(src, "/")+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s %s: %v\n%s", flag, src, dst, err, out)
	}
}

// RequireStack fails (CI=true) or skips when the host lacks the node
// stack: test nodes see the host's packages beneath their overlays.
func RequireStack(t testing.TB) {
	t.Helper()
	RequireTools(t, "nginx", "uwsgi")
}

// Get requests http://NODE/path with a Host header on a fresh connection
// and returns the status and body; a connection error is status 0.
func Get(node *testbed.Node, host, path string) (int, string) {
	req, err := http.NewRequest("GET", "http://"+node.IP+path, nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Host = host
	client := http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// MustContain fails the test when got lacks want.
func MustContain(t testing.TB, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Fatalf("output lacks %q:\n%s", want, got)
	}
}
