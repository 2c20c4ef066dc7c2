package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	serverfiles "github.com/gitreceive/gitreceive/server-files"
)

// routeArgs are Route's (or Unroute's) arguments, passed to the helper
// that runs inside a node.
type routeArgs struct {
	Runtime  Runtime
	App      string
	Instance string
	Live     int
	Prev     int
	Spec     Spec
	Disabled bool
}

// routeHelper is the test binary's "route"/"unroute" entry point (see
// TestMain): it runs on a test node, against that node's nginx.
func routeHelper(helper, args string) int {
	var a routeArgs
	if err := json.Unmarshal([]byte(args), &a); err != nil {
		fmt.Fprintf(os.Stderr, "%s: arguments %q: %v\n", helper, args, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var err error
	if helper == "route" {
		err = Route(ctx, a.Runtime, a.App, a.Instance, a.Live, a.Prev, a.Spec, a.Disabled)
	} else {
		err = Unroute(ctx, a.Runtime, a.App, a.Instance)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// Where the test puts things inside the node (its /srv is NODE.Dir/srv).
const (
	e2eHelper = "/srv/gitreceive-agent.test"
)

// requireNginxStack skips (fails with CI=true) without the node stack on
// the host: nodes see the host's /usr beneath their overlays.
func requireNginxStack(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/usr/sbin/nginx", "/usr/bin/uwsgi", "/usr/lib/uwsgi/plugins/python3_plugin.so"} {
		if _, err := os.Stat(p); err != nil {
			msg := fmt.Sprintf("needs %s on the host: apt-get install %s", p, strings.Join(serverfiles.Stack, " "))
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s (CI=true, so not skipping)", msg)
			}
			t.Skip(msg)
		}
	}
}

// routeNode is one set-up test node and what the test started on it.
type routeNode struct {
	t      *testing.T
	bed    *testbed.Bed
	node   *testbed.Node
	rt     Runtime
	client *http.Client
}

// fs is path p of the node's file system as the host reaches it.
func (n *routeNode) fs(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", n.node.PID), p)
}

// exec runs args in the node. Not under the test's context, which is
// cancelled before clean-ups (and they look at the node on failure).
func (n *routeNode) exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := n.bed.Exec(ctx, n.node, args...)
	return string(out), err
}

func (n *routeNode) mustExec(args ...string) string {
	n.t.Helper()
	out, err := n.exec(args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// route runs Route inside the node.
func (n *routeNode) route(app, instance string, live, prev int, locs []Location, disabled bool) error {
	spec := Spec{Platform: "python", Runner: "app.py", Locations: locs}
	return n.helper("route", routeArgs{Runtime: n.rt, App: app, Instance: instance, Live: live, Prev: prev, Spec: spec, Disabled: disabled})
}

func (n *routeNode) mustRoute(app, instance string, live, prev int, locs []Location, disabled bool) {
	n.t.Helper()
	if err := n.route(app, instance, live, prev, locs, disabled); err != nil {
		n.t.Fatal(err)
	}
}

func (n *routeNode) unroute(app, instance string) error {
	return n.helper("unroute", routeArgs{Runtime: n.rt, App: app, Instance: instance})
}

func (n *routeNode) helper(name string, a routeArgs) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	start := time.Now()
	_, err = n.exec("env", testHelperEnv+"="+name, testHelperArgsEnv+"="+string(data), e2eHelper)
	n.t.Logf("%s %s/%s: %s", name, a.App, a.Instance, time.Since(start).Round(time.Millisecond))
	return err
}

// release makes APP/INSTANCE's release vN in the node: an app that echoes
// what it was given and notes every request in hits.log, and static/.
// Then it starts the release's vassal on rt.SocketPath, as root (the
// test's stand-in for the emperor), and waits for its socket to accept.
func (n *routeNode) release(app, instance string, v int) {
	n.t.Helper()
	dir := n.rt.ReleaseDir(app, instance, v)
	if err := os.MkdirAll(n.fs(filepath.Join(dir, "static", "css")), 0o755); err != nil {
		n.t.Fatal(err)
	}
	label := fmt.Sprintf("%s/%s v%d", app, instance, v)
	files := map[string]string{
		"app.py": fmt.Sprintf(`HITS = %q
RELEASE = %q

def application(env, start_response):
    with open(HITS, "a") as f:
        f.write(env.get("PATH_INFO", "<unset>") + "\n")
    body = "release=" + RELEASE + "\n"
    for k in ("SCRIPT_NAME", "PATH_INFO", "HTTP_HOST"):
        body += k + "=" + env.get(k, "<unset>") + "\n"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
`, filepath.Join(dir, "hits.log"), label),
		"static/style.css":     "/* " + label + " */\n",
		"static/css/extra.css": "/* extra " + label + " */\n",
	}
	for name, content := range files {
		if err := os.WriteFile(n.fs(filepath.Join(dir, name)), []byte(content), 0o644); err != nil {
			n.t.Fatal(err)
		}
	}
	if err := os.MkdirAll(n.fs(n.rt.SocketsDir), 0o755); err != nil {
		n.t.Fatal(err)
	}
	socket := n.rt.SocketPath(app, instance, v)
	n.mustExec("uwsgi", "--plugins", "python3", "--master", "--processes", "1", "--need-app",
		"--socket", socket, "--chmod-socket=666", "--wsgi-file", filepath.Join(dir, "app.py"),
		"--daemonize", filepath.Join(dir, "uwsgi.log"), "--pidfile", filepath.Join(dir, "uwsgi.pid"))
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		var c net.Conn
		if c, err = net.DialTimeout("unix", n.fs(socket), time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(n.fs(filepath.Join(dir, "uwsgi.log")))
	n.t.Fatalf("vassal of %s does not accept on %s after 10 s: %v\n%s", label, socket, err, log)
}

// hits is what the app of a release was asked, one PATH_INFO a line.
func (n *routeNode) hits(app, instance string, v int) string {
	data, err := os.ReadFile(n.fs(filepath.Join(n.rt.ReleaseDir(app, instance, v), "hits.log")))
	if err != nil && !os.IsNotExist(err) {
		n.t.Fatal(err)
	}
	return string(data)
}

type response struct {
	status      int
	contentType string
	body        string
}

func (r response) String() string {
	return fmt.Sprintf("%d %s %q", r.status, r.contentType, r.body)
}

func (n *routeNode) do(method, host, path string) (response, error) {
	req, err := http.NewRequestWithContext(n.t.Context(), method, "http://"+n.node.IP+path, nil)
	if err != nil {
		return response{}, err
	}
	req.Host = host
	resp, err := n.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), string(body)}, err
}

// expect asks host for path until check accepts the answer, for nginx just
// started by the node's setup. It gives up after 10 s.
func (n *routeNode) expect(method, host, path string, check func(response) error) {
	n.t.Helper()
	var last error
	for attempt := 0; attempt < 100; attempt++ {
		r, err := n.do(method, host, path)
		if err == nil {
			if err = check(r); err == nil {
				return
			}
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	n.t.Fatalf("%s http://%s%s (Host %s): %v", method, n.node.IP, path, host, last)
}

// expectNow is expect without retrying: for an answer that must hold at
// once, nothing having changed or Route having returned (it waits for
// nginx's old workers to stop taking connections).
func (n *routeNode) expectNow(method, host, path string, check func(response) error) {
	n.t.Helper()
	r, err := n.do(method, host, path)
	if err == nil {
		err = check(r)
	}
	if err != nil {
		n.t.Fatalf("%s http://%s%s (Host %s): %v", method, n.node.IP, path, host, err)
	}
}

// fromApp accepts the echo app's answer from release label with these
// SCRIPT_NAME and PATH_INFO; the Host it saw must be the request's.
func fromApp(label, host, scriptName, pathInfo string) func(response) error {
	return func(r response) error {
		want := fmt.Sprintf("release=%s\nSCRIPT_NAME=%s\nPATH_INFO=%s\nHTTP_HOST=%s\n", label, scriptName, pathInfo, host)
		if r.status != http.StatusOK || r.body != want {
			return fmt.Errorf("got %v, want 200 %q", r, want)
		}
		return nil
	}
}

// fromStatic accepts the static file content, served by nginx.
func fromStatic(content string) func(response) error {
	return func(r response) error {
		if r.status != http.StatusOK || r.body != content || r.contentType != "text/css" {
			return fmt.Errorf("got %v, want 200 text/css %q", r, content)
		}
		return nil
	}
}

// page accepts one of the pages in PagesDir with its status.
func page(status int, text string) func(response) error {
	return func(r response) error {
		if r.status != status || !strings.Contains(r.body, text) {
			return fmt.Errorf("got %v, want %d and the page saying %q", r, status, text)
		}
		return nil
	}
}

var (
	catchAll   = page(http.StatusNotFound, "No app is deployed at this address")
	notHere    = catchAll // a path of a routed host outside its locations gets the same page
	disabledUp = page(http.StatusServiceUnavailable, "This app is disabled for now")
)

func TestRouteOnTestNode(t *testing.T) {
	testbed.Require(t)
	requireNginxStack(t)
	bed := testbed.New(t, testbed.Options{Prefix: "ng", Subnet: "10.77.246.0/24", Count: 1})
	n := &routeNode{
		t: t, bed: bed, node: bed.Nodes[0], rt: SystemRuntime(),
		// No proxy from the environment: traffic goes to the node only.
		// Fresh connections: nginx closes idle ones on reload.
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}

	// Another bed on the same subnet (a test bed does not check) would
	// answer in our node's place, with the same catch-all page.
	if out, err := exec.Command("ip", "route", "get", n.node.IP).CombinedOutput(); err != nil || !strings.Contains(string(out), " dev ng-br ") {
		t.Fatalf("the route to %s is not through this bed's bridge ng-br (another test bed on 10.77.246.0/24?): %s %v", n.node.IP, out, err)
	}

	// What nginx said, for a failure (the bed's own clean-up, registered
	// earlier, runs after this).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		n.t = t
		for _, p := range []string{"/var/log/nginx/error.log", n.rt.InstanceNginxLogsDir("shop", "main") + "/error.log"} {
			data, _ := os.ReadFile(n.fs(p))
			t.Logf("%s on the node:\n%s", p, data)
		}
		out, _ := n.exec("sh", "-c", "ls -la /etc/gitreceive/nginx; ps -ef | grep '[n]ginx'; nginx -T 2>&1 | grep -E 'server_name|include|# configuration'")
		t.Logf("%s", out)
	})

	// The node as `nodes setup` leaves it: nginx running with the catch-all.
	start := time.Now()
	setUpTestNode(t, n.node, n.exec, e2eHelper)
	n.expect(http.MethodGet, "shop.test", "/", catchAll)
	for _, v := range []int{1, 2} {
		n.release("shop", "main", v)
	}
	n.release("blog", "main", 1)
	t.Logf("node set up in %s", time.Since(start).Round(time.Millisecond))

	shop := []Location{{Host: "shop.test"}, {Host: "www.shop.test", Path: "/p"}}
	const v1, v2 = "shop/main v1", "shop/main v2"
	css := func(label string) string { return "/* " + label + " */\n" }

	t.Run("root location and static files", func(t *testing.T) {
		n.t = t
		n.mustRoute("shop", "main", 1, 0, shop, false)
		n.expectNow(http.MethodGet, "shop.test", "/hello", fromApp(v1, "shop.test", "", "/hello"))
		n.expectNow(http.MethodGet, "shop.test", "/", fromApp(v1, "shop.test", "", "/"))
		n.expectNow(http.MethodGet, "shop.test", "/style.css", fromStatic(css(v1)))
		n.expectNow(http.MethodGet, "shop.test", "/css/extra.css", fromStatic("/* extra "+v1+" */\n"))
		// A directory of static/ and a file that is not there go to the app.
		n.expectNow(http.MethodGet, "shop.test", "/css", fromApp(v1, "shop.test", "", "/css"))
		n.expectNow(http.MethodGet, "shop.test", "/missing.css", fromApp(v1, "shop.test", "", "/missing.css"))
		if hits := n.hits("shop", "main", 1); strings.Contains(hits, "style.css") || strings.Contains(hits, "extra.css") {
			t.Errorf("the app was asked for a static file; its requests:\n%s", hits)
		}
		// The catch-all is still there, and prev.HOST is not routed.
		n.expectNow(http.MethodGet, "unknown.test", "/", catchAll)
		n.expectNow(http.MethodGet, "prev.shop.test", "/hello", catchAll)
		access, err := os.ReadFile(n.fs(filepath.Join(n.rt.InstanceNginxLogsDir("shop", "main"), "access.log")))
		if err != nil || !strings.Contains(string(access), "GET /hello ") || !strings.Contains(string(access), "GET /style.css ") {
			t.Errorf("the instance's access.log: %v\n%s", err, access)
		}
	})

	t.Run("prefix location", func(t *testing.T) {
		n.t = t
		n.expectNow(http.MethodGet, "www.shop.test", "/p/x", fromApp(v1, "www.shop.test", "/p", "/x"))
		n.expectNow(http.MethodGet, "www.shop.test", "/p/a/b/", fromApp(v1, "www.shop.test", "/p", "/a/b/"))
		n.expectNow(http.MethodGet, "www.shop.test", "/p/", fromApp(v1, "www.shop.test", "/p", "/"))
		n.expectNow(http.MethodGet, "www.shop.test", "/p", fromApp(v1, "www.shop.test", "/p", ""))
		n.expectNow(http.MethodGet, "www.shop.test", "/p/style.css", fromStatic(css(v1)))
		// Outside the prefix: the host is ours but no app's.
		n.expectNow(http.MethodGet, "www.shop.test", "/", notHere)
		n.expectNow(http.MethodGet, "www.shop.test", "/px", notHere)
		n.expectNow(http.MethodGet, "www.shop.test", "/style.css", notHere)
	})

	t.Run("switch to v2 with the previous release at prev.HOST", func(t *testing.T) {
		n.t = t
		n.mustRoute("shop", "main", 2, 1, shop, false)
		n.expectNow(http.MethodGet, "shop.test", "/hello", fromApp(v2, "shop.test", "", "/hello"))
		n.expectNow(http.MethodGet, "shop.test", "/style.css", fromStatic(css(v2)))
		n.expectNow(http.MethodGet, "www.shop.test", "/p/x", fromApp(v2, "www.shop.test", "/p", "/x"))
		n.expectNow(http.MethodGet, "prev.shop.test", "/hello", fromApp(v1, "prev.shop.test", "", "/hello"))
		n.expectNow(http.MethodGet, "prev.shop.test", "/style.css", fromStatic(css(v1)))
		n.expectNow(http.MethodGet, "prev.www.shop.test", "/p/x", fromApp(v1, "prev.www.shop.test", "/p", "/x"))
		n.expectNow(http.MethodGet, "prev.www.shop.test", "/p/style.css", fromStatic(css(v1)))
		conf, err := os.ReadFile(n.fs(n.rt.NginxPath("shop", "main")))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(conf), "/current") {
			t.Errorf("the routing names the current symlink; it must name releases/vN:\n%s", conf)
		}
	})

	t.Run("a host of another instance is refused", func(t *testing.T) {
		n.t = t
		for _, locs := range [][]Location{
			{{Host: "blog.test"}, {Host: "shop.test", Path: "/blog"}},
			{{Host: "prev.www.shop.test"}},
		} {
			err := n.route("blog", "main", 1, 0, locs, false)
			if err == nil || !strings.Contains(err.Error(), "blog/main") || !strings.Contains(err.Error(), "shop/main") {
				t.Fatalf("routing blog/main to %v: %v, want a refusal naming both instances", locs, err)
			}
			if _, err := os.Lstat(n.fs(n.rt.NginxPath("blog", "main"))); !os.IsNotExist(err) {
				t.Fatalf("blog/main's file was written although refused (%v)", err)
			}
		}
		n.expectNow(http.MethodGet, "shop.test", "/hello", fromApp(v2, "shop.test", "", "/hello"))
		n.expectNow(http.MethodGet, "blog.test", "/", catchAll)
		n.mustRoute("blog", "main", 1, 0, []Location{{Host: "blog.test"}}, false)
		n.expectNow(http.MethodGet, "blog.test", "/", fromApp("blog/main v1", "blog.test", "", "/"))
		n.expectNow(http.MethodGet, "shop.test", "/hello", fromApp(v2, "shop.test", "", "/hello"))
	})

	t.Run("a configuration nginx rejects changes nothing", func(t *testing.T) {
		n.t = t
		path := n.fs(n.rt.NginxPath("shop", "main"))
		before, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// Someone's broken file: every nginx -t fails until it is gone.
		broken := n.fs(filepath.Join(n.rt.NginxDir, "zz-broken.conf"))
		if err := os.WriteFile(broken, []byte("this is not nginx;\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		err = n.route("shop", "main", 1, 0, shop, false)
		if err == nil || !strings.Contains(err.Error(), "zz-broken.conf") || !strings.Contains(err.Error(), "shop/main") {
			t.Fatalf("routing with a broken file beside: %v, want an error quoting nginx on zz-broken.conf", err)
		}
		if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
			t.Errorf("shop/main's file after the refused change: %v\n%s\nwant the previous one:\n%s", err, after, before)
		}
		// A first routing is removed again.
		if err := n.route("new", "main", 1, 0, []Location{{Host: "new.test"}}, false); err == nil {
			t.Errorf("routing new/main with a broken file beside succeeded")
		}
		if _, err := os.Lstat(n.fs(n.rt.NginxPath("new", "main"))); !os.IsNotExist(err) {
			t.Errorf("new/main's refused file is still there (%v)", err)
		}
		if err := n.unroute("blog", "main"); err == nil {
			t.Errorf("unrouting blog/main with a broken file beside succeeded")
		}
		// nginx still runs and serves what it served.
		n.expectNow(http.MethodGet, "shop.test", "/hello", fromApp(v2, "shop.test", "", "/hello"))
		n.expectNow(http.MethodGet, "prev.shop.test", "/hello", fromApp(v1, "prev.shop.test", "", "/hello"))
		n.expectNow(http.MethodGet, "blog.test", "/", fromApp("blog/main v1", "blog.test", "", "/"))
		n.expectNow(http.MethodGet, "new.test", "/", catchAll)
		// And it reloads again once the broken file is gone.
		if err := os.Remove(broken); err != nil {
			t.Fatal(err)
		}
		n.mustRoute("shop", "main", 1, 2, shop, false)
		n.expectNow(http.MethodGet, "shop.test", "/hello", fromApp(v1, "shop.test", "", "/hello"))
		n.expectNow(http.MethodGet, "prev.shop.test", "/hello", fromApp(v2, "prev.shop.test", "", "/hello"))
		n.mustRoute("shop", "main", 2, 1, shop, false)
		n.expectNow(http.MethodGet, "shop.test", "/hello", fromApp(v2, "shop.test", "", "/hello"))
	})

	t.Run("disabled", func(t *testing.T) {
		n.t = t
		n.mustRoute("shop", "main", 2, 1, shop, true)
		n.expectNow(http.MethodGet, "shop.test", "/hello", disabledUp)
		hitsBefore := n.hits("shop", "main", 2) + n.hits("shop", "main", 1)
		n.expectNow(http.MethodGet, "shop.test", "/style.css", disabledUp)
		n.expectNow(http.MethodGet, "www.shop.test", "/p/x", disabledUp)
		n.expectNow(http.MethodGet, "www.shop.test", "/p", disabledUp)
		n.expectNow(http.MethodGet, "prev.shop.test", "/", disabledUp)
		n.expectNow(http.MethodGet, "www.shop.test", "/elsewhere", notHere)
		n.expectNow(http.MethodPost, "shop.test", "/form", disabledUp)
		if hits := n.hits("shop", "main", 2) + n.hits("shop", "main", 1); hits != hitsBefore {
			t.Errorf("a disabled app was asked: its requests went from\n%s\nto\n%s", hitsBefore, hits)
		}
		n.mustRoute("shop", "main", 2, 1, shop, false)
		n.expectNow(http.MethodGet, "shop.test", "/hello", fromApp(v2, "shop.test", "", "/hello"))
	})

	t.Run("unroute", func(t *testing.T) {
		n.t = t
		if err := n.unroute("shop", "main"); err != nil {
			t.Fatal(err)
		}
		n.expectNow(http.MethodGet, "shop.test", "/hello", catchAll)
		n.expectNow(http.MethodGet, "www.shop.test", "/p/x", catchAll)
		n.expectNow(http.MethodGet, "prev.shop.test", "/hello", catchAll)
		n.expectNow(http.MethodGet, "blog.test", "/", fromApp("blog/main v1", "blog.test", "", "/"))
		if err := n.unroute("shop", "main"); err != nil {
			t.Errorf("unrouting an instance that has no routing: %v", err)
		}
		// Its hosts are free for another instance now.
		n.mustRoute("blog", "main", 1, 0, []Location{{Host: "blog.test"}, {Host: "shop.test", Path: "/blog"}}, false)
		n.expectNow(http.MethodGet, "shop.test", "/blog/x", fromApp("blog/main v1", "shop.test", "/blog", "/x"))
	})
}
