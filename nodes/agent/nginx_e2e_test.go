//go:build e2e

package agent

import (
	"bufio"
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
	"github.com/gitreceive/gitreceive/services"
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
		_, err = a.Runtime.instance(a.App, a.Instance).route(ctx, a.Live, a.Prev, a.Spec, a.Disabled)
	} else {
		err = a.Runtime.instance(a.App, a.Instance).unroute(ctx)
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

// route runs Route inside the node.
func (n *testNode) route(app, instance string, live, prev int, locs []Location, disabled bool) error {
	spec := Spec{Platform: "python", Runner: "app.py", Locations: locs}
	return n.routeHelper("route", routeArgs{Runtime: n.rt, App: app, Instance: instance, Live: live, Prev: prev, Spec: spec, Disabled: disabled})
}

func (n *testNode) mustRoute(app, instance string, live, prev int, locs []Location, disabled bool) {
	n.t.Helper()
	if err := n.route(app, instance, live, prev, locs, disabled); err != nil {
		n.t.Fatal(err)
	}
}

// routeWith runs Route inside the node for a spec with these services
// (app.ini's service.NAME).
func (n *testNode) routeWith(app, instance string, live, prev int, locs []Location, services ...string) error {
	spec := Spec{Platform: "python", Runner: "app.py", Locations: locs, Services: services}
	return n.routeHelper("route", routeArgs{Runtime: n.rt, App: app, Instance: instance, Live: live, Prev: prev, Spec: spec})
}

func (n *testNode) unroute(app, instance string) error {
	return n.routeHelper("unroute", routeArgs{Runtime: n.rt, App: app, Instance: instance})
}

func (n *testNode) routeHelper(name string, a routeArgs) error {
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
func (n *testNode) release(app, instance string, v int) {
	n.t.Helper()
	dir := n.rt.releaseDir(app, instance, v)
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
	socket := n.rt.socketPath(app, instance, v)
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
func (n *testNode) hits(app, instance string, v int) string {
	data, err := os.ReadFile(n.fs(filepath.Join(n.rt.releaseDir(app, instance, v), "hits.log")))
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

func (n *testNode) do(method, host, path string) (response, error) {
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

// doRaw sends rawPath as the request target byte for byte (net/http would
// not send every dot segment and escape as given) and reads the answer.
func (n *testNode) doRaw(host, rawPath string) (response, error) {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(n.node.IP, "80"), 5*time.Second)
	if err != nil {
		return response{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", rawPath, host); err != nil {
		return response{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), string(body)}, err
}

// expect asks host for path until check accepts the answer, for nginx just
// started by the node's setup. It gives up after 10 s.
func (n *testNode) expect(method, host, path string, check func(response) error) {
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
func (n *testNode) expectNow(method, host, path string, check func(response) error) {
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
	n := &testNode{
		t: t, bed: bed, node: bed.Nodes[0], rt: SystemRuntime(),
		// No proxy from the environment: traffic goes to the node only.
		// Fresh connections: nginx closes idle ones on reload.
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}

	// Another bed on the same subnet (a test bed does not check) would
	// answer in our node's place, with the same catch-all page.
	if out, err := exec.Command("ip", "route", "get", n.node.IP).CombinedOutput(); err != nil || !strings.Contains(string(out), " dev "+bed.Bridge()+" ") {
		t.Fatalf("the route to %s is not through this bed's bridge %s (another test bed on its subnet?): %s %v", n.node.IP, bed.Bridge(), out, err)
	}

	// What nginx said, for a failure (the bed's own clean-up, registered
	// earlier, runs after this).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		n.t = t
		for _, p := range []string{"/var/log/nginx/error.log", n.rt.instanceNginxLogsDir("shop", "main") + "/error.log"} {
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
	for _, v := range []int{1, 2} {
		n.release("wiki", "main", v)
	}
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
		access, err := os.ReadFile(n.fs(filepath.Join(n.rt.instanceNginxLogsDir("shop", "main"), "access.log")))
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

	t.Run("writable root", func(t *testing.T) {
		n.t = t
		const w1, w2 = "wiki/main v1", "wiki/main v2"
		wiki := []Location{{Host: "wiki.test"}, {Host: "www.wiki.test", Path: "/p"}}
		// The directory as the writable_root service provisions it: the
		// app user's, group www-data, setgid; its files readable by the
		// group only, so nginx reads them as www-data.
		wr := services.Dir(services.Host{DataDir: n.rt.DataDir}, "writable_root", services.Instance{App: "wiki", Name: "main"})
		if wr == "" || !strings.HasPrefix(wr, "/var/lib/gitreceive/writable-root/wiki/") {
			t.Fatalf("writable root of wiki/main: %q", wr)
		}
		appDir := filepath.Dir(wr)
		n.mustExec("install", "-d", "-m", "755", filepath.Dir(appDir), appDir)
		n.mustExec("install", "-d", "-o", "nobody", "-g", n.rt.NginxGroup, "-m", "2750", wr)
		const secret = "SECRET, not to be served\n"
		files := map[string]string{
			wr + "/only-wr.css":               "/* only in the writable root */\n",
			wr + "/style.css":                 "/* the writable root's style.css: static/ has one too */\n",
			wr + "/sub/deep.css":              "/* deep in the writable root */\n",
			appDir + "/outside.css":           secret, // beside the writable root, readable by nginx
			n.rt.DataDir + "/secret.css":      secret,
			n.rt.AppsDir + "/wiki/secret.css": secret,
		}
		for p, content := range files {
			if err := os.MkdirAll(n.fs(filepath.Dir(p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(n.fs(p), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// Symlinks the app could make: out of its directory, and inside it.
		for name, target := range map[string]string{"abs-link.css": appDir + "/outside.css", "rel-link.css": "../outside.css", "in-link.css": "only-wr.css"} {
			if err := os.Symlink(target, n.fs(filepath.Join(wr, name))); err != nil {
				t.Fatal(err)
			}
		}
		n.mustExec("sh", "-c", `chown -hR "$1:$2" "$3" && find "$3" -mindepth 1 -type f -exec chmod 640 {} + && find "$3" -mindepth 1 -type d -exec chmod 2750 {} +`,
			"sh", "nobody", n.rt.NginxGroup, wr)

		n.mustRoute("wiki", "main", 1, 0, wiki, false) // without the service first
		n.expectNow(http.MethodGet, "wiki.test", "/only-wr.css", fromApp(w1, "wiki.test", "", "/only-wr.css"))
		if err := n.routeWith("wiki", "main", 2, 1, wiki, "postgis", "writable_root"); err != nil {
			t.Fatal(err)
		}
		before1, before2 := n.hits("wiki", "main", 1), n.hits("wiki", "main", 2)
		wrCSS := fromStatic(files[wr+"/only-wr.css"])
		for _, c := range []struct {
			host, path string
			check      func(response) error
		}{
			// A file only in the writable root is served from it, on
			// every location and at prev.HOST (the directory is the
			// instance's, not the release's).
			{"wiki.test", "/only-wr.css", wrCSS},
			{"wiki.test", "/sub/deep.css", fromStatic(files[wr+"/sub/deep.css"])},
			{"www.wiki.test", "/p/only-wr.css", wrCSS},
			{"prev.wiki.test", "/only-wr.css", wrCSS},
			{"prev.www.wiki.test", "/p/sub/deep.css", fromStatic(files[wr+"/sub/deep.css"])},
			// A file in both: static/ wins.
			{"wiki.test", "/style.css", fromStatic(css(w2))},
			{"www.wiki.test", "/p/style.css", fromStatic(css(w2))},
			{"prev.wiki.test", "/style.css", fromStatic(css(w1))},
			{"wiki.test", "/css/extra.css", fromStatic("/* extra " + w2 + " */\n")},
			// Neither: the app, with the usual SCRIPT_NAME and PATH_INFO.
			{"wiki.test", "/missing.css", fromApp(w2, "wiki.test", "", "/missing.css")},
			{"wiki.test", "/", fromApp(w2, "wiki.test", "", "/")},
			{"wiki.test", "/sub", fromApp(w2, "wiki.test", "", "/sub")}, // a directory is no file
			{"www.wiki.test", "/p/missing", fromApp(w2, "www.wiki.test", "/p", "/missing")},
			{"www.wiki.test", "/p", fromApp(w2, "www.wiki.test", "/p", "")},
			{"prev.wiki.test", "/missing", fromApp(w1, "prev.wiki.test", "", "/missing")},
			// No symlink in the writable root is followed: the app gets
			// the request as for a missing file.
			{"wiki.test", "/abs-link.css", fromApp(w2, "wiki.test", "", "/abs-link.css")},
			{"wiki.test", "/rel-link.css", fromApp(w2, "wiki.test", "", "/rel-link.css")},
			{"wiki.test", "/in-link.css", fromApp(w2, "wiki.test", "", "/in-link.css")},
		} {
			n.expectNow(http.MethodGet, c.host, c.path, c.check)
		}
		asked := strings.TrimPrefix(n.hits("wiki", "main", 1), before1) + strings.TrimPrefix(n.hits("wiki", "main", 2), before2)
		for _, f := range []string{"only-wr.css", "deep.css", "style.css", "extra.css"} {
			if strings.Contains(asked, f) {
				t.Errorf("the app was asked for %s, a file of static/ or the writable root; its requests:\n%s", f, asked)
			}
		}

		// Dot segments, encoded or not, never reach beyond the writable
		// root (nginx normalizes $uri and refuses to climb above /).
		for _, c := range []struct{ host, path string }{
			{"wiki.test", "/../outside.css"},
			{"wiki.test", "/%2e%2e/outside.css"},
			{"wiki.test", "/%2E%2E/outside.css"},
			{"wiki.test", "/..%2foutside.css"},
			{"wiki.test", "/%2e%2e%2foutside.css"},
			{"wiki.test", "/sub/..%2f..%2foutside.css"},
			{"wiki.test", "/sub/%2e%2e/%2e%2e/outside.css"},
			{"wiki.test", "/./../outside.css"},
			{"wiki.test", "//../outside.css"},
			{"wiki.test", "/sub/../../../secret.css"},
			{"wiki.test", "/%2e%2e/%2e%2e/%2e%2e/secret.css"},
			{"wiki.test", "/..%5coutside.css"},
			{"wiki.test", "/..%00/outside.css"},
			{"wiki.test", "/sub/..;/../outside.css"},
			{"wiki.test", "http://wiki.test/../outside.css"},
			{"www.wiki.test", "/p/../outside.css"},
			{"www.wiki.test", "/p/..%2foutside.css"},
			{"www.wiki.test", "/p/%2e%2e/%2e%2e/outside.css"},
			{"www.wiki.test", "/p/sub/..%2f..%2f..%2foutside.css"},
			{"prev.wiki.test", "/%2e%2e/outside.css"},
		} {
			r, err := n.doRaw(c.host, c.path)
			if err != nil {
				t.Errorf("GET %s (Host %s): %v", c.path, c.host, err)
				continue
			}
			if strings.Contains(r.body, "SECRET") {
				t.Errorf("GET %s (Host %s) served a file outside the writable root: %v", c.path, c.host, r)
			} else {
				t.Logf("GET %s (Host %s): %d", c.path, c.host, r.status)
			}
		}
		// What normalizes to a path inside is served from inside.
		for _, p := range []string{"/sub/../only-wr.css", "/sub/%2e%2e/only-wr.css", "/%6fnly-wr.css", "/sub/./deep.css"} {
			r, err := n.doRaw("wiki.test", p)
			if err == nil {
				err = wrCSS(r)
				if p == "/sub/./deep.css" {
					err = fromStatic(files[wr+"/sub/deep.css"])(r)
				}
			}
			if err != nil {
				t.Errorf("GET %s: %v", p, err)
			}
		}

		// Without the service, the writable root is not served.
		n.mustRoute("wiki", "main", 2, 1, wiki, false)
		n.expectNow(http.MethodGet, "wiki.test", "/only-wr.css", fromApp(w2, "wiki.test", "", "/only-wr.css"))
		n.expectNow(http.MethodGet, "wiki.test", "/style.css", fromStatic(css(w2)))
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
		conf, err := os.ReadFile(n.fs(n.rt.nginxPath("shop", "main")))
		if err != nil {
			t.Fatal(err)
		}
		// Issue 20 reversed the old rule ("names releases/vN, never the
		// current symlink"): the file names the route links only, so a
		// switch renames them and leaves the file alone.
		if strings.Contains(string(conf), "releases/v") || !strings.Contains(string(conf), "/current/static;") {
			t.Errorf("the routing names a release; it must name the route links only:\n%s", conf)
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
			if _, err := os.Lstat(n.fs(n.rt.nginxPath("blog", "main"))); !os.IsNotExist(err) {
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
		path := n.fs(n.rt.nginxPath("shop", "main"))
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
		if _, err := os.Lstat(n.fs(n.rt.nginxPath("new", "main"))); !os.IsNotExist(err) {
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
