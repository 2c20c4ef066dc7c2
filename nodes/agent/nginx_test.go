package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/services"
)

// testRuntime is a Runtime with every directory in a fresh temporary one.
func testRuntime(t *testing.T) Runtime {
	t.Helper()
	base := t.TempDir()
	rt := Runtime{
		AppsDir:      filepath.Join(base, "apps"),
		VassalsDir:   filepath.Join(base, "vassals"),
		NginxDir:     filepath.Join(base, "nginx"),
		SocketsDir:   filepath.Join(base, "sockets"),
		RoutesDir:    filepath.Join(base, "routes"),
		LogsDir:      filepath.Join(base, "logs"),
		NginxLogsDir: filepath.Join(base, "nginx-logs"),
		PagesDir:     filepath.Join(base, "pages"),
	}
	if err := os.MkdirAll(rt.NginxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The instances these tests route have their directories, as a start
	// makes them: route re-points the release links there.
	for _, app := range []string{"shop", "blog", "news"} {
		if err := os.MkdirAll(rt.instanceDir(app, "main"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return rt
}

func routeSpec(locs ...Location) Spec {
	return Spec{Platform: "python", Runner: "app.py", Locations: locs}
}

func withServices(s Spec, names ...string) Spec {
	s.Services = names
	return s
}

// serverBlock returns the server block of host in conf ("" when none).
func serverBlock(conf, host string) string {
	for _, block := range strings.Split(conf, "\nserver {\n")[1:] {
		if strings.Contains(block, "\n    server_name "+host+";\n") {
			return block
		}
	}
	return ""
}

func TestRenderNginx(t *testing.T) {
	rt := SystemRuntime()
	const (
		// The route links (routelinks.go): the same whichever release is live.
		liveSock   = "unix:/var/lib/gitreceive/routes/shop.main.sock;"
		prevSock   = "unix:/var/lib/gitreceive/routes/shop.main.prev.sock;"
		liveStatic = "root /srv/gitreceive/apps/shop/main/current/static;"
		prevStatic = "root /srv/gitreceive/apps/shop/main/previous/static;"
	)
	// The writable_root service's directory of shop/main, as the service names it.
	wrDir := "/var/lib/gitreceive/writable-root/shop/" + services.Instance{App: "shop", Name: "main"}.Resource()
	if wrDir != services.Dir(services.Host{DataDir: rt.DataDir}, "writable_root", services.Instance{App: "shop", Name: "main"}) {
		t.Fatalf("the writable root of shop/main is not %s", wrDir)
	}
	type server struct {
		host   string
		want   []string // substrings of the host's server block
		absent []string
	}
	tests := []struct {
		name       string
		live, prev int
		spec       Spec
		disabled   bool
		servers    []server
		noServer   []string // hosts without a server block
	}{
		{
			name: "root location", live: 2, spec: routeSpec(Location{Host: "shop.test"}),
			servers: []server{{host: "shop.test", want: []string{
				"listen 80;", "listen [::]:80;",
				"access_log /var/log/gitreceive/nginx/shop/main/access.log;",
				"error_log /var/log/gitreceive/nginx/shop/main/error.log;",
				"client_max_body_size 100m;",
				"uwsgi_read_timeout 90s;", // default harakiri 60 + 30
				liveStatic,
				"location / {\n        try_files $uri @app0;\n    }",
				"location @app0 {\n        include uwsgi_params;\n        uwsgi_param HTTP_HOST $host;\n        uwsgi_param SCRIPT_NAME \"\";\n        uwsgi_pass " + liveSock + "\n    }",
			}, absent: []string{"return 404", "rewrite", "/previous", "PATH_INFO", "@wr", "disable_symlinks", "writable"}}},
			noServer: []string{"prev.shop.test"},
		},
		{
			name: "prefix location", live: 1, spec: func() Spec {
				s := routeSpec(Location{Host: "shop.test", Path: "/p"})
				s.Harakiri = 100
				return s
			}(),
			servers: []server{{host: "shop.test", want: []string{
				liveStatic,
				"uwsgi_read_timeout 130s;",
				"location ^~ /p/ {\n        rewrite (?s)^/p(/.*)$ $1 break;\n        try_files $uri @app0;\n    }",
				"location = /p {\n        include uwsgi_params;\n        uwsgi_param HTTP_HOST $host;\n        uwsgi_param SCRIPT_NAME /p;\n        uwsgi_param PATH_INFO \"\";\n        uwsgi_pass " + liveSock + "\n    }",
				"location @app0 {\n        include uwsgi_params;\n        uwsgi_param HTTP_HOST $host;\n        uwsgi_param SCRIPT_NAME /p;\n        uwsgi_pass " + liveSock + "\n    }",
				// The rest of the host is no app's.
				"location / {\n        error_page 404 /.gitreceive-pages/404.html;\n        return 404;\n    }",
				"location = /.gitreceive-pages/404.html {\n        internal;\n        alias /usr/share/gitreceive/pages/404.html;\n    }",
			}}},
		},
		{
			name: "regexp characters in a prefix are escaped", live: 1, spec: routeSpec(Location{Host: "shop.test", Path: "/a.b+c(d)*~-@:!&,="}),
			servers: []server{{host: "shop.test", want: []string{
				`location ^~ /a.b+c(d)*~-@:!&,=/ {`,
				`rewrite (?s)^/a\.b\+c\(d\)\*\~\-\@\:\!\&\,\=(/.*)$ $1 break;`,
				`location = /a.b+c(d)*~-@:!&,= {`,
			}}},
		},
		{
			name: "several locations", live: 1,
			spec: routeSpec(Location{Host: "shop.test"}, Location{Host: "www.shop.test", Path: "/p"}, Location{Host: "shop.test", Path: "/api/v1"}),
			servers: []server{
				{host: "shop.test", want: []string{
					"location / {\n        try_files $uri @app0;",
					"location ^~ /api/v1/ {\n        rewrite (?s)^/api/v1(/.*)$ $1 break;\n        try_files $uri @app1;",
					"uwsgi_param SCRIPT_NAME /api/v1;",
				}, absent: []string{"return 404"}},
				{host: "www.shop.test", want: []string{"location ^~ /p/ {", "return 404;"}, absent: []string{"/api/v1"}},
			},
			noServer: []string{"prev.shop.test", "prev.www.shop.test"},
		},
		{
			name: "previous release", live: 2, prev: 1,
			spec: routeSpec(Location{Host: "shop.test"}, Location{Host: "www.shop.test", Path: "/p"}),
			servers: []server{
				{host: "shop.test", want: []string{liveStatic, liveSock}, absent: []string{prevSock}},
				{host: "www.shop.test", want: []string{liveStatic, liveSock, "location ^~ /p/ {"}, absent: []string{prevSock}},
				{host: "prev.shop.test", want: []string{prevStatic, prevSock, "access_log /var/log/gitreceive/nginx/shop/main/access.log;"}, absent: []string{liveSock}},
				{host: "prev.www.shop.test", want: []string{prevStatic, prevSock, "location ^~ /p/ {", "uwsgi_param SCRIPT_NAME /p;"}, absent: []string{liveSock}},
			},
		},
		{
			// static/, then the writable root, then the app; on every host
			// and path, the previous release's included.
			name: "writable root", live: 2, prev: 1,
			spec: withServices(routeSpec(Location{Host: "shop.test"}, Location{Host: "www.shop.test", Path: "/p"}, Location{Host: "shop.test", Path: "/api"}), "postgis", "writable_root"),
			servers: []server{
				{host: "shop.test", want: []string{
					"# static/ of the live release answers first, then the writable root;",
					liveStatic,
					"location / {\n        try_files $uri @wr0;\n    }",
					"location @wr0 {\n        root " + wrDir + ";\n        disable_symlinks on from=" + wrDir + ";\n        try_files $uri @app0;\n    }",
					"location @app0 {\n        include uwsgi_params;\n        uwsgi_param HTTP_HOST $host;\n        uwsgi_param SCRIPT_NAME \"\";\n        uwsgi_pass " + liveSock + "\n    }",
					"location ^~ /api/ {\n        rewrite (?s)^/api(/.*)$ $1 break;\n        try_files $uri @wr1;\n    }",
					"location @wr1 {\n        root " + wrDir + ";\n        disable_symlinks on from=" + wrDir + ";\n        try_files $uri @app1;\n    }",
				}, absent: []string{prevSock, "location / {\n        try_files $uri @app0;"}},
				{host: "www.shop.test", want: []string{
					"location ^~ /p/ {\n        rewrite (?s)^/p(/.*)$ $1 break;\n        try_files $uri @wr0;\n    }",
					// /p itself is the app's root, never a file.
					"location = /p {\n        include uwsgi_params;",
					"location @wr0 {\n        root " + wrDir + ";\n        disable_symlinks on from=" + wrDir + ";\n        try_files $uri @app0;\n    }",
					"uwsgi_param SCRIPT_NAME /p;\n        uwsgi_pass " + liveSock,
				}},
				{host: "prev.shop.test", want: []string{
					prevStatic,
					"location / {\n        try_files $uri @wr0;\n    }",
					"location @wr0 {\n        root " + wrDir + ";\n        disable_symlinks on from=" + wrDir + ";\n        try_files $uri @app0;\n    }",
					"uwsgi_pass " + prevSock,
				}, absent: []string{liveSock}},
				{host: "prev.www.shop.test", want: []string{"try_files $uri @wr0;", "root " + wrDir + ";", "uwsgi_pass " + prevSock}},
			},
		},
		{
			name: "writable root, disabled", live: 2, disabled: true,
			spec:    withServices(routeSpec(Location{Host: "shop.test"}), "writable_root"),
			servers: []server{{host: "shop.test", want: []string{"return 503;"}, absent: []string{"@wr", wrDir, "try_files", "uwsgi"}}},
		},
		{
			name: "other services only", live: 1,
			spec:    withServices(routeSpec(Location{Host: "shop.test"}), "files", "postgis"),
			servers: []server{{host: "shop.test", want: []string{"try_files $uri @app0;"}, absent: []string{"@wr", "disable_symlinks", "/files/"}}},
		},
		{
			name: "disabled", live: 2, prev: 1, disabled: true,
			spec: routeSpec(Location{Host: "shop.test"}, Location{Host: "www.shop.test", Path: "/p"}),
			servers: []server{
				{host: "shop.test", want: []string{
					"location / {\n        error_page 503 /.gitreceive-pages/503.html;\n        return 503;\n    }",
					"location = /.gitreceive-pages/503.html {\n        internal;\n        alias /usr/share/gitreceive/pages/503.html;\n    }",
				}, absent: []string{"uwsgi", "root ", "try_files"}},
				{host: "www.shop.test", want: []string{
					"location ^~ /p/ {\n        error_page 503 /.gitreceive-pages/503.html;\n        return 503;\n    }",
					"location = /p {\n        error_page 503 /.gitreceive-pages/503.html;\n        return 503;\n    }",
					"return 404;",
				}, absent: []string{"uwsgi", "try_files"}},
				{host: "prev.shop.test", want: []string{"return 503;"}, absent: []string{"uwsgi"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := rt.instance("shop", "main").renderNginx(tt.live, tt.prev, tt.spec, tt.disabled)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(conf, instanceHeader+"shop main\n") {
				t.Errorf("no instance header line:\n%s", conf)
			}
			var hosts []string
			for _, s := range tt.servers {
				hosts = append(hosts, s.host)
				block := serverBlock(conf, s.host)
				if block == "" {
					t.Errorf("no server block for %s:\n%s", s.host, conf)
					continue
				}
				for _, w := range s.want {
					if !strings.Contains(block, w) {
						t.Errorf("%s's server block lacks %q:\n%s", s.host, w, block)
					}
				}
				for _, a := range s.absent {
					if strings.Contains(block, a) {
						t.Errorf("%s's server block has %q:\n%s", s.host, a, block)
					}
				}
			}
			for _, h := range tt.noServer {
				if serverBlock(conf, h) != "" {
					t.Errorf("a server block for %s:\n%s", h, conf)
				}
			}
			// One block per host, and the braces balance.
			names := serverNames(conf)
			for _, h := range hosts {
				if n := strings.Count(" "+strings.Join(names, " ")+" ", " "+h+" "); n != 1 {
					t.Errorf("%d server blocks for %s", n, h)
				}
			}
			if strings.Count(conf, "{") != strings.Count(conf, "}") {
				t.Errorf("unbalanced braces:\n%s", conf)
			}
			// Every line is a comment, a block's edge or one directive.
			for _, line := range strings.Split(conf, "\n") {
				line = strings.TrimSpace(line)
				if line != "" && !strings.HasPrefix(line, "#") && line != "}" && !strings.HasSuffix(line, "{") && (!strings.HasSuffix(line, ";") || strings.Count(line, ";") != 1) {
					t.Errorf("line %q is not one directive", line)
				}
			}
		})
	}
}

func TestRenderNginxRefuses(t *testing.T) {
	good := routeSpec(Location{Host: "shop.test"})
	withRT := func(edit func(*Runtime)) Runtime {
		rt := SystemRuntime()
		edit(&rt)
		return rt
	}
	tests := []struct {
		name           string
		rt             Runtime
		app, instance  string
		live, prev     int
		spec           Spec
		wantErrContain string
	}{
		// Hosts and paths Spec.Validate lets through but nginx would read as syntax.
		{name: "semicolon in a path", spec: routeSpec(Location{Host: "a.test", Path: "/a;b"}), wantErrContain: "syntax"},
		{name: "quote in a path", spec: routeSpec(Location{Host: "a.test", Path: "/a'b"}), wantErrContain: "syntax"},
		{name: "variable in a path", spec: routeSpec(Location{Host: "a.test", Path: "/a$host"}), wantErrContain: "syntax"},
		// And what Validate refuses first.
		{name: "brace in a path", spec: routeSpec(Location{Host: "a.test", Path: "/a{b"}), wantErrContain: "location path"},
		{name: "space in a path", spec: routeSpec(Location{Host: "a.test", Path: "/a b"}), wantErrContain: "location path"},
		{name: "newline in a host", spec: routeSpec(Location{Host: "a.test\nserver_name evil"}), wantErrContain: "location host"},
		{name: "semicolon in a host", spec: routeSpec(Location{Host: "a.test;"}), wantErrContain: "location host"},
		{name: "uppercase host", spec: routeSpec(Location{Host: "A.test"}), wantErrContain: "location host"},
		{name: "trailing slash", spec: routeSpec(Location{Host: "a.test", Path: "/p/"}), wantErrContain: "location path"},
		{name: "dot dot", spec: routeSpec(Location{Host: "a.test", Path: "/p/../q"}), wantErrContain: "location path"},
		{name: "no location", spec: routeSpec(), wantErrContain: "locations"},
		{name: "a location twice", spec: routeSpec(Location{Host: "a.test", Path: "/p"}, Location{Host: "a.test", Path: "/p"}), wantErrContain: "twice"},
		{name: "a location at prev.HOST", spec: routeSpec(Location{Host: "a.test"}, Location{Host: "prev.a.test"}), wantErrContain: "previous release"},
		{name: "bad app", app: "Shop;", spec: good, wantErrContain: "invalid app"},
		{name: "bad instance", instance: "main x", spec: good, wantErrContain: "invalid app"},
		{name: "no live release", live: -1, spec: good, wantErrContain: "live release"},
		{name: "prev is live", live: 2, prev: 2, spec: good, wantErrContain: "live release"},
		{name: "space in the apps dir", rt: withRT(func(rt *Runtime) { rt.AppsDir = "/srv/my apps" }), spec: good, wantErrContain: "syntax"},
		{name: "semicolon in the logs dir", rt: withRT(func(rt *Runtime) { rt.NginxLogsDir = "/var/log/a;b" }), spec: good, wantErrContain: "syntax"},
		{name: "relative pages dir", rt: withRT(func(rt *Runtime) { rt.PagesDir = "pages" }), spec: good, wantErrContain: "absolute"},
		{name: "brace in the sockets dir", rt: withRT(func(rt *Runtime) { rt.SocketsDir = "/run/{x}" }), spec: good, wantErrContain: "syntax"},
		{name: "socket path too long", rt: withRT(func(rt *Runtime) { rt.SocketsDir = "/run/" + strings.Repeat("s", 100) }), spec: good, wantErrContain: "longer"},
		// The writable root's directory comes from the runtime.
		{name: "writable root without a data dir", rt: withRT(func(rt *Runtime) { rt.DataDir = "" }), spec: withServices(good, "writable_root"), wantErrContain: "data directory"},
		{name: "space in the data dir", rt: withRT(func(rt *Runtime) { rt.DataDir = "/var/lib/my data" }), spec: withServices(good, "writable_root"), wantErrContain: "syntax"},
		{name: "semicolon in the data dir", rt: withRT(func(rt *Runtime) { rt.DataDir = "/var/lib/a;b" }), spec: withServices(good, "writable_root"), wantErrContain: "syntax"},
		{name: "relative data dir", rt: withRT(func(rt *Runtime) { rt.DataDir = "var/lib/gitreceive" }), spec: withServices(good, "writable_root"), wantErrContain: "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := tt.rt
			if rt.NginxDir == "" {
				rt = SystemRuntime()
			}
			app, instance, live := tt.app, tt.instance, tt.live
			if app == "" {
				app = "shop"
			}
			if instance == "" {
				instance = "main"
			}
			if live == 0 {
				live = 1
			} else if live < 0 {
				live = 0
			}
			conf, err := rt.instance(app, instance).renderNginx(live, tt.prev, tt.spec, false)
			if err == nil {
				t.Fatalf("rendered:\n%s", conf)
			}
			if !strings.Contains(err.Error(), tt.wantErrContain) {
				t.Errorf("error %q, want it to say %q", err, tt.wantErrContain)
			}
		})
	}
}

func TestServerNames(t *testing.T) {
	conf := `# server_name commented.test;
server {
    server_name a.test
                B.test "c.test"; # and d.test
    location / { return 404; }
}
server { server_name e.test;}
server_names_hash_bucket_size 128;
`
	if got, want := serverNames(conf), []string{"a.test", "b.test", "c.test", "e.test"}; !slices.Equal(got, want) {
		t.Errorf("serverNames = %q, want %q", got, want)
	}
}

// fakeNginx stands in for nginx and systemctl: a script that logs its
// arguments to the returned file, fails -t while a *.conf in nginxDir holds
// BROKEN (quoting it like nginx), and fails a reload while nginxDir/../no-reload exists.
func fakeNginx(t *testing.T, nginxDir string) (log string) {
	t.Helper()
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	script := `#!/bin/sh
echo "$(basename "$0") $*" >> ` + log + `
if [ "$1" = -t ]; then
	for f in ` + nginxDir + `/*.conf; do
		if grep -q BROKEN "$f" 2>/dev/null; then
			echo "nginx: [emerg] unknown directive \"BROKEN\" in $f:1" >&2
			exit 1
		fi
	done
fi
if [ "$1" = -s ] || [ "$1" = reload ]; then
	if [ -e ` + filepath.Dir(nginxDir) + `/no-reload ]; then
		echo 'nginx: [error] invalid PID number "" in "/run/nginx.pid"' >&2
		exit 1
	fi
fi
exit 0
`
	for _, name := range []string{"nginx", "systemctl"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	saved := []string{nginxCommand, systemctlCommand, systemdRunDir, nginxPidFile}
	nginxCommand, systemctlCommand = filepath.Join(dir, "nginx"), filepath.Join(dir, "systemctl")
	systemdRunDir = filepath.Join(dir, "no-systemd")
	nginxPidFile = filepath.Join(dir, "no-nginx.pid") // no master to watch
	t.Cleanup(func() {
		nginxCommand, systemctlCommand, systemdRunDir, nginxPidFile = saved[0], saved[1], saved[2], saved[3]
	})
	return log
}

func calls(t *testing.T, log string) string {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}

func resetCalls(t *testing.T, log string) {
	t.Helper()
	if err := os.Remove(log); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// dirNames lists dir's entries.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestRouteWritesTestsAndReloads(t *testing.T) {
	rt := testRuntime(t)
	log := fakeNginx(t, rt.NginxDir)
	ctx := context.Background()
	spec := routeSpec(Location{Host: "shop.test"})

	if _, err := rt.instance("shop", "main").route(ctx, 1, 0, spec, false); err != nil {
		t.Fatal(err)
	}
	path := rt.nginxPath("shop", "main")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rt.instance("shop", "main").renderNginx(1, 0, spec, false)
	if string(got) != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("file mode: %v %v, want 0644", info.Mode(), err)
	}
	if c := calls(t, log); c != "nginx -t -q\nnginx -s reload\n" {
		t.Errorf("nginx calls %q, want a test, then a reload", c)
	}
	if info, err := os.Stat(rt.instanceNginxLogsDir("shop", "main")); err != nil || !info.IsDir() {
		t.Errorf("the instance's logs directory was not made: %v", err)
	}
	// No temporary file is left, and nothing else matches *.conf.
	if names := dirNames(t, rt.NginxDir); !slices.Equal(names, []string{lockName, "shop.main.conf"}) {
		t.Errorf("%s holds %q", rt.NginxDir, names)
	}

	// Under systemd, the reload goes through systemctl.
	resetCalls(t, log)
	if err := os.Mkdir(systemdRunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.instance("shop", "main").route(ctx, 2, 1, spec, false); err != nil {
		t.Fatal(err)
	}
	if c := calls(t, log); c != "nginx -t -q\nsystemctl reload nginx\n" {
		t.Errorf("nginx calls under systemd %q", c)
	}
	if err := os.Remove(systemdRunDir); err != nil {
		t.Fatal(err)
	}

	// A failed reload is an error; the tested file stays. (A new host
	// makes the reload: a release switch alone does not reload.)
	if err := os.WriteFile(filepath.Join(filepath.Dir(rt.NginxDir), "no-reload"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = rt.instance("shop", "main").route(ctx, 3, 2, routeSpec(Location{Host: "shop.test"}, Location{Host: "www.shop.test"}), false)
	if err == nil || !strings.Contains(err.Error(), "nginx -s reload failed") || !strings.Contains(err.Error(), "invalid PID") {
		t.Errorf("Route with a failing reload: %v", err)
	}
	if got, _ := os.ReadFile(path); !strings.Contains(string(got), "server_name www.shop.test;") {
		t.Errorf("the tested file was not kept after a failed reload:\n%s", got)
	}
	// ... and the links are back on what nginx served before.
	if live, prev := rt.instance("shop", "main").pointed(liveSlot), rt.instance("shop", "main").pointed(prevSlot); live != 2 || prev != 1 {
		t.Errorf("after a failed reload the links point at v%d and v%d, want v2 and v1", live, prev)
	}
}

// TestRouteSwitchRenamesLinks: a switch that changes no host or location
// only re-points the route links (DESIGN.md decision 12): no nginx -t,
// no reload; a change of hosts reloads and says why.
func TestRouteSwitchRenamesLinks(t *testing.T) {
	rt := testRuntime(t)
	log := fakeNginx(t, rt.NginxDir)
	ctx := context.Background()
	ri := rt.instance("shop", "main")
	spec := routeSpec(Location{Host: "shop.test"})
	links := func() string {
		var got []string
		for _, p := range []string{ri.slotRelease(liveSlot), ri.slotRelease(prevSlot), ri.slotSocket(liveSlot), ri.slotSocket(prevSlot)} {
			target, err := os.Readlink(p)
			if err != nil {
				target = "-"
			}
			got = append(got, target)
		}
		return strings.Join(got, " ")
	}
	sock := func(n int) string { return ri.socketPath(n) }

	for _, tt := range []struct {
		live, prev int
		spec       Spec
		reloaded   string // "" = no nginx call at all
		links      string
	}{
		{live: 1, spec: spec, reloaded: "new host shop.test",
			links: "releases/v1 - " + sock(1) + " -"},
		{live: 2, prev: 1, spec: spec, reloaded: "new host prev.shop.test",
			links: "releases/v2 releases/v1 " + sock(2) + " " + sock(1)},
		{live: 3, prev: 2, spec: spec,
			links: "releases/v3 releases/v2 " + sock(3) + " " + sock(2)},
		// A rollback is the same rename.
		{live: 2, prev: 3, spec: spec,
			links: "releases/v2 releases/v3 " + sock(2) + " " + sock(3)},
		{live: 4, prev: 2, spec: routeSpec(Location{Host: "shop.test"}, Location{Host: "www.shop.test"}),
			reloaded: "new host www.shop.test, prev.www.shop.test",
			links:    "releases/v4 releases/v2 " + sock(4) + " " + sock(2)},
		{live: 5, prev: 4, spec: spec, reloaded: "host www.shop.test, prev.www.shop.test removed",
			links: "releases/v5 releases/v4 " + sock(5) + " " + sock(4)},
	} {
		resetCalls(t, log)
		reloaded, err := ri.route(ctx, tt.live, tt.prev, tt.spec, false)
		if err != nil {
			t.Fatalf("v%d: %v", tt.live, err)
		}
		if reloaded != tt.reloaded {
			t.Errorf("v%d: reloaded %q, want %q", tt.live, reloaded, tt.reloaded)
		}
		want := ""
		if tt.reloaded != "" {
			want = "nginx -t -q\nnginx -s reload\n"
		}
		if c := calls(t, log); c != want {
			t.Errorf("v%d: nginx calls %q, want %q", tt.live, c, want)
		}
		if got := links(); got != tt.links {
			t.Errorf("v%d: links %q, want %q", tt.live, got, tt.links)
		}
	}
	// No temporary link is left behind.
	for _, dir := range []string{rt.RoutesDir, ri.dir()} {
		for _, name := range dirNames(t, dir) {
			if strings.HasSuffix(name, ".new") {
				t.Errorf("%s holds %s", dir, name)
			}
		}
	}
	// Unrouting removes the socket links.
	if err := ri.unroute(ctx); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, rt.RoutesDir); len(names) != 0 {
		t.Errorf("%s holds %q after unroute", rt.RoutesDir, names)
	}
}

func TestReloadReason(t *testing.T) {
	const sock = "/r/a.main.sock"
	block := func(hosts ...string) string {
		var b strings.Builder
		for _, h := range hosts {
			b.WriteString("server {\n    server_name " + h + ";\n    uwsgi_pass unix:" + sock + ";\n}\n")
		}
		return b.String()
	}
	for _, tt := range []struct {
		old    string
		hadOld bool
		text   string
		want   string
	}{
		{text: block("a.test"), want: "new host a.test"},
		{old: block("a.test"), hadOld: true, text: block("a.test", "b.test"), want: "new host b.test"},
		{old: block("a.test", "b.test"), hadOld: true, text: block("a.test"), want: "host b.test removed"},
		{old: block("a.test"), hadOld: true, text: block("b.test"), want: "new host b.test; host a.test removed"},
		{old: block("a.test"), hadOld: true, text: block("a.test") + "# disabled\n", want: "locations or settings changed"},
		{old: "server {\n    server_name a.test;\n    uwsgi_pass unix:/s/a.main.v1.sock;\n}\n", hadOld: true, text: block("a.test"),
			want: "routes moved to links that a switch re-points (once per instance)"},
	} {
		if got := reloadReason(tt.old, tt.hadOld, tt.text, sock); got != tt.want {
			t.Errorf("reloadReason(%q -> %q) = %q, want %q", tt.old, tt.text, got, tt.want)
		}
	}
}

func TestRouteRollsBackWhatNginxRejects(t *testing.T) {
	rt := testRuntime(t)
	log := fakeNginx(t, rt.NginxDir)
	ctx := context.Background()
	spec := routeSpec(Location{Host: "shop.test"})
	if _, err := rt.instance("shop", "main").route(ctx, 1, 0, spec, false); err != nil {
		t.Fatal(err)
	}
	path := rt.nginxPath("shop", "main")
	before, _ := os.ReadFile(path)

	broken := filepath.Join(rt.NginxDir, "zz-broken.conf")
	if err := os.WriteFile(broken, []byte("BROKEN\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resetCalls(t, log)
	_, err := rt.instance("shop", "main").route(ctx, 2, 1, spec, false)
	if err == nil || !strings.Contains(err.Error(), `unknown directive "BROKEN" in `+broken) || !strings.Contains(err.Error(), "shop/main") ||
		!strings.Contains(err.Error(), "put back") {
		t.Fatalf("Route beside a broken file: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Errorf("the previous file was not put back:\n%s", after)
	}
	if c := calls(t, log); strings.Contains(c, "reload") {
		t.Errorf("nginx was reloaded after a failed test: %q", c)
	}

	// A first routing is removed.
	_, err = rt.instance("blog", "main").route(ctx, 1, 0, routeSpec(Location{Host: "blog.test"}), false)
	if err == nil || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("first Route beside a broken file: %v", err)
	}
	if _, err := os.Lstat(rt.nginxPath("blog", "main")); !os.IsNotExist(err) {
		t.Errorf("blog/main's rejected file is still there: %v", err)
	}

	// Unroute puts the file back too, so a retry does the whole job.
	err = rt.instance("shop", "main").unroute(ctx)
	if err == nil || !strings.Contains(err.Error(), "BROKEN") {
		t.Fatalf("Unroute beside a broken file: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Errorf("Unroute did not put the file back:\n%s", after)
	}

	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.instance("shop", "main").route(ctx, 2, 1, spec, false); err != nil {
		t.Fatalf("Route once the broken file is gone: %v", err)
	}
	resetCalls(t, log)
	if err := rt.instance("shop", "main").unroute(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("Unroute left %s: %v", path, err)
	}
	if c := calls(t, log); c != "nginx -t -q\nnginx -s reload\n" {
		t.Errorf("Unroute's nginx calls %q", c)
	}
	// Again: nothing to do, no error, nginx left alone.
	resetCalls(t, log)
	if err := rt.instance("shop", "main").unroute(ctx); err != nil {
		t.Errorf("Unroute without a file: %v", err)
	}
	if c := calls(t, log); c != "" {
		t.Errorf("Unroute without a file called nginx: %q", c)
	}
}

func TestRouteRefusesAHostOfAnotherInstance(t *testing.T) {
	rt := testRuntime(t)
	log := fakeNginx(t, rt.NginxDir)
	ctx := context.Background()
	if _, err := rt.instance("shop", "main").route(ctx, 2, 1, routeSpec(Location{Host: "shop.test"}, Location{Host: "www.shop.test", Path: "/p"}), false); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.instance("news", "main").route(ctx, 1, 0, routeSpec(Location{Host: "prev.news.test"}), false); err != nil {
		t.Fatal(err)
	}
	// A hand-written file, in nginx's syntax but not ours.
	if err := os.WriteFile(filepath.Join(rt.NginxDir, "local.conf"), []byte("server {\n  listen 80;\n  server_name\n    legacy.test\n    old.test;\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resetCalls(t, log)
	names := dirNames(t, rt.NginxDir)

	tests := []struct {
		name  string
		locs  []Location
		other string
	}{
		{"same host", []Location{{Host: "shop.test"}}, "instance shop/main"},
		{"same host, other path", []Location{{Host: "blog.test"}, {Host: "www.shop.test", Path: "/blog"}}, "instance shop/main"},
		{"its previous release's host", []Location{{Host: "prev.shop.test"}}, "instance shop/main"},
		// news/main serves prev.news.test, where blog/main's previous release would answer.
		{"a host whose prev is served", []Location{{Host: "news.test"}}, "instance news/main"},
		{"a hand-written file", []Location{{Host: "old.test"}}, "the file local.conf"},
		{"prev of a hand-written host", []Location{{Host: "prev.legacy.test"}}, "the file local.conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rt.instance("blog", "main").route(ctx, 1, 0, routeSpec(tt.locs...), false)
			if err == nil || !strings.Contains(err.Error(), "blog/main") || !strings.Contains(err.Error(), tt.other) {
				t.Fatalf("Route blog/main to %v: %v, want a refusal naming blog/main and %s", tt.locs, err, tt.other)
			}
			if got := dirNames(t, rt.NginxDir); !slices.Equal(got, names) {
				t.Errorf("%s holds %q after a refusal, want %q", rt.NginxDir, got, names)
			}
			if c := calls(t, log); c != "" {
				t.Errorf("nginx was called for a refused routing: %q", c)
			}
		})
	}

	// The instance's own file is no conflict, nor is a new host.
	if _, err := rt.instance("shop", "main").route(ctx, 3, 2, routeSpec(Location{Host: "shop.test"}, Location{Host: "shop2.test"}), false); err != nil {
		t.Errorf("rerouting shop/main: %v", err)
	}
	if _, err := rt.instance("blog", "main").route(ctx, 1, 0, routeSpec(Location{Host: "blog.test"}), false); err != nil {
		t.Errorf("routing blog/main to a free host: %v", err)
	}
	// A released host is free again.
	if err := rt.instance("shop", "main").unroute(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.instance("blog", "main").route(ctx, 1, 0, routeSpec(Location{Host: "blog.test"}, Location{Host: "shop.test"}), false); err != nil {
		t.Errorf("routing blog/main to shop/main's former host: %v", err)
	}
}

func TestRouteWaitsForTheLock(t *testing.T) {
	rt := testRuntime(t)
	fakeNginx(t, rt.NginxDir)
	unlock, err := lockNginxDir(context.Background(), rt.NginxDir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = rt.instance("shop", "main").route(ctx, 1, 0, routeSpec(Location{Host: "shop.test"}), false)
	if err == nil || !strings.Contains(err.Error(), "another routing change") {
		t.Fatalf("Route while another holds the lock: %v", err)
	}
	if _, err := os.Lstat(rt.nginxPath("shop", "main")); !os.IsNotExist(err) {
		t.Errorf("Route wrote its file without the lock")
	}
}

// An example for the report and for readers: root + prefix + previous.
func TestRenderNginxExample(t *testing.T) {
	conf, err := (SystemRuntime()).instance("shop", "main").renderNginx(2, 1, routeSpec(Location{Host: "shop.test"}, Location{Host: "shop.test", Path: "/p"}), false)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^    server_name prev\.shop\.test;$`).MatchString(conf) {
		t.Errorf("no prev server:\n%s", conf)
	}
	if testing.Verbose() {
		t.Logf("\n%s", conf)
	}
}

func TestQuoteOutput(t *testing.T) {
	out := "2026/11/25 07:52:18 [emerg] 193#193: unknown directive \"this\" in /etc/gitreceive/nginx/zz-broken.conf:1\nnginx: configuration file /etc/nginx/nginx.conf test failed\n"
	want := `nginx: [emerg] unknown directive "this" in /etc/gitreceive/nginx/zz-broken.conf:1; nginx: configuration file /etc/nginx/nginx.conf test failed (exit status 1)`
	if got := quoteOutput([]byte(out), errors.New("exit status 1")); got != want {
		t.Errorf("quoteOutput = %q, want %q", got, want)
	}
	if got := quoteOutput(nil, errors.New("exit status 1")); got != "exit status 1" {
		t.Errorf("quoteOutput without output = %q", got)
	}
}

func TestParentPID(t *testing.T) {
	if got := parentPID(os.Getpid()); got != os.Getppid() {
		t.Errorf("parentPID(self) = %d, want %d", got, os.Getppid())
	}
	if got := parentPID(1 << 30); got != -1 {
		t.Errorf("parentPID of no process = %d, want -1", got)
	}
}

// TestReloadWaitsForNewWorkers plays nginx with bash: a "master" whose
// child is titled like a worker, and which replaces that child on SIGHUP
// (as nginx does on reload) unless told to ignore reloads.
func TestReloadWaitsForNewWorkers(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	for _, tt := range []struct {
		name    string
		reloads bool
	}{{"reloaded", true}, {"reload not carried out", false}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fakeNginx(t, filepath.Join(dir, "nginx"))
			nginxPidFile = filepath.Join(dir, "nginx.pid")
			savedWait := reloadWait
			reloadWait = 500 * time.Millisecond
			t.Cleanup(func() { reloadWait = savedWait })
			// The fake nginx (see fakeNginx) signals nobody; this one does.
			script := "#!/bin/sh\n[ \"$1\" = -s ] && kill -HUP \"$(cat " + nginxPidFile + ")\"\nexit 0\n"
			if err := os.WriteFile(nginxCommand, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			onHUP := `kill $w; worker; echo reloaded >> ` + filepath.Join(dir, "log")
			if !tt.reloads {
				onHUP = ":"
			}
			master := exec.Command("bash", "-c", `worker() { (exec -a "nginx: worker process" sleep 60) & w=$!; }
trap '`+onHUP+`' HUP
worker
echo $$ > `+nginxPidFile+`.tmp && mv `+nginxPidFile+`.tmp `+nginxPidFile+`
while :; do wait; done`)
			master.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := master.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				syscall.Kill(-master.Process.Pid, syscall.SIGKILL)
				master.Wait()
			})
			var old []int
			for attempt := 0; attempt < 100 && len(old) == 0; attempt++ {
				time.Sleep(20 * time.Millisecond)
				_, old = nginxWorkers()
			}
			if len(old) != 1 {
				t.Fatalf("the fake master's worker was not found: %v", old)
			}

			err := nginxReload(context.Background())
			_, now := nginxWorkers()
			if tt.reloads {
				if err != nil {
					t.Fatal(err)
				}
				if len(now) != 1 || now[0] == old[0] {
					t.Errorf("workers %v after the reload, was %v: nginxReload returned before the new one ran", now, old)
				}
			} else if err == nil || !strings.Contains(err.Error(), "did not load the new configuration") {
				t.Errorf("a reload that nginx ignored: %v", err)
			}
		})
	}
}

// TestRenderNginxPHP: a PHP app's non-PHP files are served by nginx from
// php_root (after static/ and the writable root), and no path naming a PHP
// file is ever looked up as a file: it goes to the app.
func TestRenderNginxPHP(t *testing.T) {
	rt := SystemRuntime()
	spec := Spec{Platform: "php", Runner: "index.php", PHPRoot: "web", Locations: []Location{{Host: "blog.test"}, {Host: "x.test", Path: "/wp"}}}
	conf, err := rt.instance("blog", "main").renderNginx(2, 0, spec, false)
	if err != nil {
		t.Fatal(err)
	}
	guard := "error_page 418 = @app0;\n        if ($uri ~* \"\\.php(/|$)\") {\n            return 418;\n        }\n        try_files $uri @files0;"
	files := "location @files0 {\n        root /srv/gitreceive/apps/blog/main/current/web;\n        if ($uri ~ \"/\\.\") {\n            return 404;\n        }\n        try_files $uri @app0;\n    }"
	for _, host := range []string{"blog.test", "x.test"} {
		block := serverBlock(conf, host)
		if !strings.Contains(block, guard) || !strings.Contains(block, files) {
			t.Errorf("%s:\n%s", host, block)
		}
	}
	if b := serverBlock(conf, "x.test"); !strings.Contains(b, "rewrite (?s)^/wp(/.*)$ $1 break;\n        error_page 418 = @app0;") {
		t.Errorf("under a path the guard comes after the prefix is stripped:\n%s", b)
	}
	py, err := rt.instance("blog", "main").renderNginx(2, 0, routeSpec(Location{Host: "py.test"}), false)
	if err != nil || strings.Contains(py, "@files") || strings.Contains(py, "418") {
		t.Errorf("a python app has PHP routing (%v):\n%s", err, py)
	}
}
