package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/services"
)

// Routing: one nginx file per instance in Runtime.NginxDir, included by
// server-files' catch-all (conf.d/gitreceive.conf) at http level. Route
// writes it, has nginx check the whole configuration, and reloads nginx;
// a reload is the whole switch from one release to another, because the
// file names the live release's socket and static directory directly.

// Where nginx and systemd are; variables so that tests can stand in for them.
var (
	nginxCommand     = "nginx"
	systemctlCommand = "systemctl"
	systemdRunDir    = "/run/systemd/system" // exists when systemd is PID 1
	nginxPidFile     = "/run/nginx.pid"      // Debian's nginx.conf: pid /run/nginx.pid
	// reloadWait bounds the wait for nginx's old workers to stop taking
	// connections after a reload.
	reloadWait = 10 * time.Second
)

const (
	// maxBodySize is client_max_body_size: uploads larger than this get 413.
	maxBodySize = "100m"
	// readTimeoutMargin is added to the app's harakiri for uwsgi_read_timeout,
	// so that a slow request is killed by uWSGI (which logs it) rather than
	// cut by nginx while the worker goes on.
	readTimeoutMargin = 30
	// connectTimeout bounds connecting to a vassal's socket: a vassal that
	// does not accept within it is down, and the client gets 502 rather
	// than a hang.
	connectTimeout = 10
	// nginxTimeout bounds each nginx -t and reload.
	nginxTimeout = time.Minute
	// pagesPrefix is the internal URI prefix of our error pages. It is
	// reachable only through error_page ("internal"), so it hides no URL of
	// an app.
	pagesPrefix = "/.gitreceive-pages/"
	// instanceHeader starts the comment line that names a file's instance,
	// so that a conflict can name it.
	instanceHeader = "# gitreceive-instance: "
	// lockName is flocked in NginxDir while one instance's file is written,
	// tested and reloaded, so that two agents never test each other's
	// half-done change or race past the host check. Not *.conf: nginx
	// never reads it.
	lockName = ".gitreceive-route.lock"
	// maxSocketPath is sun_path's size less its NUL: a longer socket path
	// cannot be connected to.
	maxSocketPath = 107
)

// Route writes the instance's nginx server blocks to rt.nginxPath(app,
// instance), checks the whole nginx configuration, and reloads nginx.
//
// Every location of spec goes to release live (its vassal's socket, its
// static/ files first, then the instance's writable root when spec.Services
// lists writable_root); with prev > 0, "prev." + each location's host goes
// to release prev the same way (with the same writable root). disabled
// answers every location with the 503 page without contacting the app. A
// location host that another instance's file serves is refused before
// anything is written. When nginx -t rejects the configuration, the
// previous file is put back (or the new one removed) and the error quotes
// nginx. Route returns once the reload has been signalled; nginx's workers
// switch a moment later.
func (ri runtimeInstance) route(ctx context.Context, live, prev int, spec Spec, disabled bool) error {
	rt, app, instance := ri.rt, ri.app, ri.name
	if err := checkInstanceNames(app, instance); err != nil {
		return err
	}
	text, err := ri.renderNginx(live, prev, spec, disabled)
	if err != nil {
		return fmt.Errorf("routing %s/%s: %w", app, instance, err)
	}
	if err := os.MkdirAll(rt.NginxDir, 0o755); err != nil {
		return fmt.Errorf("routing %s/%s: %w", app, instance, err)
	}
	unlock, err := lockNginxDir(ctx, rt.NginxDir)
	if err != nil {
		return fmt.Errorf("routing %s/%s: %w", app, instance, err)
	}
	defer unlock()

	if err := ri.checkHostConflicts(spec); err != nil {
		return err
	}
	// nginx -t opens the log files (as root, creating them): their
	// directory must exist before the test.
	if err := os.MkdirAll(ri.nginxLogsDir(), 0o711); err != nil {
		return fmt.Errorf("routing %s/%s: logs: %w", app, instance, err)
	}
	path := ri.nginxPath()
	old, hadOld, err := readOld(path)
	if err != nil {
		return fmt.Errorf("routing %s/%s: %w", app, instance, err)
	}
	// The temporary name does not match *.conf: nginx never includes a
	// half-written file.
	if err := atomicfile.Write(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("routing %s/%s: %w", app, instance, err)
	}
	if err := nginxTest(ctx); err != nil {
		what := "the previous file was put back"
		if !hadOld {
			what = "the new file was removed"
		}
		if restoreErr := restoreConf(path, old, hadOld); restoreErr != nil {
			what = "and undoing the change failed: " + restoreErr.Error()
		}
		return fmt.Errorf("routing %s/%s: nginx rejected the configuration with %s (%s; nginx keeps serving what it served): %w",
			app, instance, path, what, err)
	}
	if err := nginxReload(ctx); err != nil {
		return fmt.Errorf("routing %s/%s: %s is in place and nginx -t accepts it, but %w", app, instance, path, err)
	}
	return nil
}

// Unroute removes the instance's nginx file and reloads nginx; an instance
// without a file is not an error. As with Route, a configuration nginx
// rejects (someone else's broken file) puts the file back, so what is on
// disk stays what nginx serves and a retry does the whole job.
func (ri runtimeInstance) unroute(ctx context.Context) error {
	rt, app, instance := ri.rt, ri.app, ri.name
	if err := checkInstanceNames(app, instance); err != nil {
		return err
	}
	if _, err := os.Stat(rt.NginxDir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	unlock, err := lockNginxDir(ctx, rt.NginxDir)
	if err != nil {
		return fmt.Errorf("unrouting %s/%s: %w", app, instance, err)
	}
	defer unlock()

	path := ri.nginxPath()
	old, hadOld, err := readOld(path)
	if err != nil {
		return fmt.Errorf("unrouting %s/%s: %w", app, instance, err)
	}
	if !hadOld {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("unrouting %s/%s: %w", app, instance, err)
	}
	if err := nginxTest(ctx); err != nil {
		if restoreErr := restoreConf(path, old, true); restoreErr != nil {
			err = errors.Join(err, fmt.Errorf("putting %s back: %w", path, restoreErr))
		}
		return fmt.Errorf("unrouting %s/%s: nginx rejects the configuration even without %s (kept; fix the file nginx names, then retry): %w",
			app, instance, path, err)
	}
	if err := nginxReload(ctx); err != nil {
		return fmt.Errorf("unrouting %s/%s: %s is removed, but %w", app, instance, path, err)
	}
	return nil
}

func checkInstanceNames(app, instance string) error {
	if !names.IsApp(app) || !names.IsInstance(instance) {
		return fmt.Errorf("invalid app %q or instance %q", app, instance)
	}
	return nil
}

// nginxSpecial is what nginx's configuration parser reads as syntax
// (quotes, escapes, variables, blocks, ends of directives, comments).
const nginxSpecial = ";{}\"'$\\#"

// checkNginxToken refuses a value that would not stay one plain token in
// nginx's configuration. Spec.Validate allow-lists hosts and paths already;
// this is the second line of defence, and it also covers the Runtime's
// directories and the instance name (in the logs path).
func checkNginxToken(what, v string) error {
	if v == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if strings.ContainsAny(v, nginxSpecial) || strings.IndexFunc(v, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		return fmt.Errorf("%s %q holds a character nginx reads as syntax (one of %s, a space, a control or non-ASCII character); refusing to write it into nginx's configuration", what, v, nginxSpecial)
	}
	return nil
}

// checkNginxPath is checkNginxToken for an absolute path.
func checkNginxPath(what, p string) error {
	if err := checkNginxToken(what, p); err != nil {
		return err
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%s %q is not a clean absolute path", what, p)
	}
	return nil
}

// hostGroup is one server block: a host and the paths the instance has on it.
type hostGroup struct {
	host  string
	paths []string // "" = the whole host
}

// groupLocations checks spec's locations for nginx and groups them by host,
// in the order they come (the first is the canonical one).
func groupLocations(locs []Location) ([]hostGroup, error) {
	var groups []hostGroup
	index := map[string]int{}
	seen := map[Location]bool{}
	for _, l := range locs {
		if err := checkNginxToken("location host", l.Host); err != nil {
			return nil, err
		}
		if l.Path != "" {
			if err := checkNginxToken("location path", l.Path); err != nil {
				return nil, err
			}
			if !strings.HasPrefix(l.Path, "/") || strings.HasSuffix(l.Path, "/") || filepath.Clean(l.Path) != l.Path {
				return nil, fmt.Errorf("location path %q must be /prefix without a trailing slash", l.Path)
			}
		}
		if seen[l] {
			return nil, fmt.Errorf("location %s is listed twice", l)
		}
		seen[l] = true
		i, ok := index[l.Host]
		if !ok {
			i = len(groups)
			index[l.Host] = i
			groups = append(groups, hostGroup{host: l.Host})
		}
		groups[i].paths = append(groups[i].paths, l.Path)
	}
	// prev.HOST always belongs to HOST's instance (see claims), so an
	// instance cannot also have it as a location of its own.
	for _, g := range groups {
		if _, ok := index["prev."+g.host]; ok {
			return nil, fmt.Errorf("location host prev.%s is where %s's previous release answers; it cannot be a location too", g.host, g.host)
		}
	}
	return groups, nil
}

// release is what one server block routes to.
type release struct {
	n       int
	socket  string // the vassal's uwsgi socket
	static  string // the release's static/ directory
	phpRoot string // php: the directory whose non-PHP files nginx serves; "" for python
}

func (ri runtimeInstance) releaseOf(n int, spec Spec) (release, error) {
	r := release{
		n:      n,
		socket: ri.socketPath(n),
		// The concrete release, never `current`: the switch is the reload.
		static: filepath.Join(ri.releaseDir(n), "static"),
	}
	if spec.Platform == "php" {
		r.phpRoot = filepath.Join(ri.releaseDir(n), spec.PHPRoot)
		if err := checkNginxPath("php_root directory", r.phpRoot); err != nil {
			return r, err
		}
	}
	if err := checkNginxPath("socket path", r.socket); err != nil {
		return r, err
	}
	if len(r.socket) > maxSocketPath {
		return r, fmt.Errorf("socket path %s is longer than the %d bytes a unix socket address holds", r.socket, maxSocketPath)
	}
	return r, checkNginxPath("static directory", r.static)
}

// renderNginx is the text of APP/INSTANCE's nginx file: a server block per
// location host for release live and, with prev > 0, one per "prev." host
// for release prev. It checks everything it writes.
func (ri runtimeInstance) renderNginx(live, prev int, spec Spec, disabled bool) (string, error) {
	rt, app, instance := ri.rt, ri.app, ri.name
	if err := checkInstanceNames(app, instance); err != nil {
		return "", err
	}
	if live < 1 || prev < 0 || prev == live {
		return "", fmt.Errorf("live release v%d and previous release v%d: want live >= 1, prev 0 (none) or another release", live, prev)
	}
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return "", fmt.Errorf("spec: %w", err)
	}
	groups, err := groupLocations(spec.Locations)
	if err != nil {
		return "", err
	}
	logs := ri.nginxLogsDir()
	if err := checkNginxPath("logs directory", logs); err != nil {
		return "", err
	}
	if err := checkNginxPath("pages directory", rt.PagesDir); err != nil {
		return "", err
	}
	cur, err := ri.releaseOf(live, spec)
	if err != nil {
		return "", err
	}
	wr, err := ri.writableRoot(spec)
	if err != nil {
		return "", err
	}

	w := &confWriter{rt: rt, logs: logs, disabled: disabled, timeout: spec.Harakiri + readTimeoutMargin, writableRoot: wr}
	state := fmt.Sprintf("release v%d", live)
	if prev > 0 {
		state += fmt.Sprintf(", previous release v%d at prev.HOST", prev)
	}
	if wr != "" {
		state += ", writable root " + wr
	}
	if disabled {
		state += ", disabled (503)"
	}
	fmt.Fprintf(&w.b, "# Routing of %s/%s: %s.\n", app, instance, state)
	fmt.Fprintf(&w.b, "# Written by the gitreceive node agent; the next deploy or activation rewrites it.\n")
	fmt.Fprintf(&w.b, "%s%s %s\n", instanceHeader, app, instance)
	for _, g := range groups {
		w.server(g.host, g.paths, cur)
	}
	if prev > 0 {
		old, err := ri.releaseOf(prev, spec)
		if err != nil {
			return "", err
		}
		for _, g := range groups {
			w.server("prev."+g.host, g.paths, old)
		}
	}
	return w.b.String(), nil
}

// writableRoot is the directory of the instance's writable_root service
// when its spec has one, else "". The directory is per instance, not per
// release: the previous release at prev.HOST is served the same one.
func (ri runtimeInstance) writableRoot(spec Spec) (string, error) {
	rt, app, instance := ri.rt, ri.app, ri.name
	if !slices.Contains(spec.Services, "writable_root") {
		return "", nil
	}
	if rt.DataDir == "" {
		return "", fmt.Errorf("the instance has the writable_root service, but the runtime names no data directory to serve it from")
	}
	dir := services.Dir(services.Host{DataDir: rt.DataDir}, "writable_root", services.Instance{App: app, Name: instance})
	if err := checkNginxPath("writable root directory", dir); err != nil {
		return "", err
	}
	return dir, nil
}

type confWriter struct {
	b            strings.Builder
	rt           Runtime
	logs         string
	disabled     bool
	timeout      int    // uwsgi_read_timeout and uwsgi_send_timeout, seconds
	writableRoot string // the writable_root service's directory, "" = none
}

func (w *confWriter) line(indent int, format string, args ...any) {
	w.b.WriteString(strings.Repeat("    ", indent))
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

// server writes one server block: host's paths routed to r.
func (w *confWriter) server(host string, paths []string, r release) {
	w.line(0, "")
	w.line(0, "server {")
	// The same sockets as the catch-all, which is default_server on both.
	w.line(1, "listen 80;")
	w.line(1, "listen [::]:80;")
	w.line(1, "server_name %s;", host)
	w.line(1, "access_log %s;", filepath.Join(w.logs, "access.log"))
	w.line(1, "error_log %s;", filepath.Join(w.logs, "error.log"))
	w.line(1, "client_max_body_size %s;", maxBodySize)
	if !w.disabled {
		if w.writableRoot != "" {
			w.line(1, "# static/ of v%d answers first, then the writable root; what is a file in neither goes to the app.", r.n)
		} else {
			w.line(1, "# static/ of v%d answers first; what is not a file there goes to the app.", r.n)
		}
		w.line(1, "root %s;", r.static)
		w.line(1, "uwsgi_connect_timeout %ds;", connectTimeout)
		w.line(1, "uwsgi_send_timeout %ds;", w.timeout)
		w.line(1, "uwsgi_read_timeout %ds;", w.timeout)
	}
	hasRoot := false
	for i, p := range paths {
		if p == "" {
			hasRoot = true
		}
		w.location(i, p, r)
	}
	if !hasRoot {
		// The host's other paths belong to no app.
		w.line(1, "location / {")
		w.errorPage(2, 404)
		w.line(2, "return 404;")
		w.line(1, "}")
		w.page(404)
	}
	if w.disabled {
		w.page(503)
	}
	w.line(0, "}")
}

// location writes the locations of one path ("" = the whole host).
//
// The app gets SCRIPT_NAME = the path and PATH_INFO = the rest: inside the
// prefix location, rewrite...break strips the prefix from $uri without
// searching the locations again, so static files are looked up relative to
// static/ (Silver Lining: static/style.css answers /PATH/style.css) and
// uwsgi_params' PATH_INFO ($document_uri) is the rest. That avoids alias,
// whose try_files handling is buggy (nginx trac #97). REQUEST_URI stays
// the request's. /PATH itself goes to the app with an empty PATH_INFO.
//
// With a writable root, what is not a file in static/ is looked up there
// (by the same, stripped $uri: a jump to a named location keeps it) before
// it goes to the app. The app writes that directory, so no symlink in it
// is followed (disable_symlinks): a link to anywhere is not served, it
// goes to the app like a missing file.
func (w *confWriter) location(i int, p string, r release) {
	named := "@app" + strconv.Itoa(i)
	if w.disabled {
		if p == "" {
			w.line(1, "location / {")
		} else {
			w.line(1, "location ^~ %s/ {", p)
			w.line(2, "error_page 503 %s503.html;", pagesPrefix)
			w.line(2, "return 503;")
			w.line(1, "}")
			w.line(1, "location = %s {", p)
		}
		w.errorPage(2, 503)
		w.line(2, "return 503;")
		w.line(1, "}")
		return
	}
	// What is not a file in static/ is looked up in the writable root,
	// then (php) among php_root's files, then goes to the app.
	afterPHPRoot := named
	if r.phpRoot != "" {
		afterPHPRoot = "@files" + strconv.Itoa(i)
	}
	afterStatic := afterPHPRoot
	if w.writableRoot != "" {
		afterStatic = "@wr" + strconv.Itoa(i)
	}
	if p == "" {
		w.line(1, "location / {")
		w.phpToApp(2, named, r)
		w.line(2, "try_files $uri %s;", afterStatic)
		w.line(1, "}")
	} else {
		w.line(1, "location ^~ %s/ {", p)
		w.line(2, "rewrite (?s)^%s(/.*)$ $1 break;", regexpQuote(p))
		w.phpToApp(2, named, r)
		w.line(2, "try_files $uri %s;", afterStatic)
		w.line(1, "}")
		w.line(1, "location = %s {", p)
		w.uwsgi(2, p, true, r)
		w.line(1, "}")
	}
	if w.writableRoot != "" {
		w.line(1, "location %s {", afterStatic)
		w.line(2, "root %s;", w.writableRoot)
		w.line(2, "disable_symlinks on from=%s;", w.writableRoot)
		w.line(2, "try_files $uri %s;", afterPHPRoot)
		w.line(1, "}")
	}
	if r.phpRoot != "" {
		w.line(1, "# php_root's other files (CSS, JS, images) are served as they are; its")
		w.line(1, "# dot files (.htaccess, .user.ini) are nobody's business.")
		w.line(1, "location %s {", afterPHPRoot)
		w.line(2, "root %s;", r.phpRoot)
		w.line(2, `if ($uri ~ "/\.") {`)
		w.line(3, "return 404;")
		w.line(2, "}")
		w.line(2, "try_files $uri %s;", named)
		w.line(1, "}")
	}
	w.line(1, "location %s {", named)
	w.uwsgi(2, p, false, r)
	w.line(1, "}")
}

// phpToApp sends every path that names a PHP file (any case, and with a
// path after it) straight to the app: nginx never serves a .php file from
// static/, the writable root or php_root, so PHP source never leaves the
// node. The jump through error_page keeps the method and the body.
func (w *confWriter) phpToApp(indent int, named string, r release) {
	if r.phpRoot == "" {
		return
	}
	w.line(indent, "error_page 418 = %s;", named)
	w.line(indent, `if ($uri ~* "\.php(/|$)") {`)
	w.line(indent+1, "return 418;")
	w.line(indent, "}")
}

// uwsgi passes the request to r's vassal. Any uwsgi_param here replaces
// every inherited one, so uwsgi_params is included here; a param given
// again after it is sent twice, and uWSGI keeps the last. emptyPathInfo is
// for /PATH itself, which is the app's root.
func (w *confWriter) uwsgi(indent int, scriptName string, emptyPathInfo bool, r release) {
	w.line(indent, "include uwsgi_params;")
	// The host the request was for (not a raw Host header that differs
	// from an absolute request line); Debian's uwsgi_params has it too,
	// nginx's own does not.
	w.line(indent, "uwsgi_param HTTP_HOST $host;")
	if scriptName == "" {
		scriptName = `""`
	}
	w.line(indent, "uwsgi_param SCRIPT_NAME %s;", scriptName)
	if emptyPathInfo {
		w.line(indent, `uwsgi_param PATH_INFO "";`)
	}
	w.line(indent, "uwsgi_pass unix:%s;", r.socket)
}

// errorPage sends status's error to our page. A URI, not a named location:
// nginx turns the method into GET for it, so a POST still gets the page
// (a named location would keep POST, which static files answer with 405).
func (w *confWriter) errorPage(indent, status int) {
	w.line(indent, "error_page %d %s%d.html;", status, pagesPrefix, status)
}

// page serves status's page from PagesDir at its internal URI.
func (w *confWriter) page(status int) {
	w.line(1, "location = %s%d.html {", pagesPrefix, status)
	w.line(2, "internal;")
	w.line(2, "alias %s;", filepath.Join(w.rt.PagesDir, strconv.Itoa(status)+".html"))
	w.line(1, "}")
}

// regexpQuote escapes every byte of s that PCRE could read as an operator
// (a backslash before a non-alphanumeric byte is always a literal). It does
// not have to handle nginx's own escapes: checkNginxToken has refused
// quotes and backslashes, and no letter is escaped.
func regexpQuote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '/' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('\\')
		b.WriteByte(c)
	}
	return b.String()
}

// claims is every host name a set of hosts may serve: each host and its
// "prev." host, whether or not a previous release is routed right now, so
// that activating a previous release later never collides with another
// instance.
func claims(hosts []string) map[string]bool {
	c := map[string]bool{}
	for _, h := range hosts {
		c[h] = true
		c["prev."+h] = true
	}
	return c
}

// checkHostConflicts refuses spec when a host it would serve is served by
// another file in rt.NginxDir. nginx only warns about a duplicate
// server_name and routes to whichever block it read first, so this check
// is ours. Two instances never share a host, even on different paths.
func (ri runtimeInstance) checkHostConflicts(spec Spec) error {
	rt, app, instance := ri.rt, ri.app, ri.name
	own := ri.nginxPath()
	files, err := filepath.Glob(filepath.Join(rt.NginxDir, "*.conf"))
	if err != nil {
		return err
	}
	slices.Sort(files)
	for _, f := range files {
		if f == own {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("routing %s/%s: reading %s to check for host conflicts: %w", app, instance, f, err)
		}
		names := serverNames(string(data))
		theirs := claims(names)
		for _, l := range spec.Locations {
			for _, h := range []string{l.Host, "prev." + l.Host} {
				if !theirs[h] {
					continue
				}
				ours := "host " + h
				if h != l.Host {
					ours = "its previous release's host " + h
				}
				how := "served"
				if !slices.Contains(names, h) {
					how = "kept for the previous release"
				}
				other := fileInstance(string(data), f)
				return fmt.Errorf("routing %s/%s: location %s: %s is already %s by %s (%s); two instances cannot share a host: "+
					"remove the location from one of them (or tear %s down first)", app, instance, l, ours, how, other, f, other)
			}
		}
	}
	return nil
}

// serverNames returns the names of every server_name directive in an
// nginx file: enough of nginx's syntax for our files and hand-written ones
// (comments, several names, a directive over several lines).
func serverNames(conf string) []string {
	var tokens []string
	for _, line := range strings.Split(conf, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.NewReplacer(";", " ; ", "{", " { ", "}", " } ").Replace(line)
		tokens = append(tokens, strings.Fields(line)...)
	}
	var names []string
	for i := 0; i < len(tokens); i++ {
		if tokens[i] != "server_name" {
			continue
		}
		for i++; i < len(tokens) && tokens[i] != ";" && tokens[i] != "{" && tokens[i] != "}"; i++ {
			names = append(names, strings.ToLower(strings.Trim(tokens[i], `"'`)))
		}
	}
	return names
}

// fileInstance names the instance a file in NginxDir belongs to: APP/INSTANCE
// from our header, else the file itself.
func fileInstance(conf, path string) string {
	for _, line := range strings.Split(conf, "\n") {
		if rest, ok := strings.CutPrefix(line, instanceHeader); ok {
			if f := strings.Fields(rest); len(f) == 2 {
				return "instance " + f[0] + "/" + f[1]
			}
		}
	}
	return "the file " + filepath.Base(path)
}

// lockNginxDir takes the routing lock in dir, waiting for another agent
// (every 50 ms, until ctx ends).
func lockNginxDir(ctx context.Context, dir string) (unlock func(), err error) {
	return lockFile(ctx, filepath.Join(dir, lockName), "another routing change")
}

// lockFile takes an exclusive flock on path (made 0600 if need be),
// waiting for whoever holds it (every 50 ms, until ctx ends: holder names
// them in the error). Closing releases the lock.
func lockFile(ctx context.Context, path, holder string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for %s to finish (%s): %w", holder, f.Name(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func readOld(path string) ([]byte, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	return data, err == nil, err
}

// restoreConf puts path back as it was: old, or no file when there was none.
func restoreConf(path string, old []byte, hadOld bool) error {
	if hadOld {
		return atomicfile.Write(path, old, 0o644)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// nginxTest runs nginx -t on the whole configuration; the error quotes
// nginx's complaint.
func nginxTest(ctx context.Context) error {
	out, err := runTool(ctx, nginxCommand, "-t", "-q")
	if err != nil {
		return fmt.Errorf("nginx -t: %s", quoteOutput(out, err))
	}
	return nil
}

// nginxReload makes nginx read its configuration again: through systemd
// when it is PID 1 (it started nginx and tracks its master), else with a
// signal to the master named by nginx's pid file. Either only sends the
// signal; nginx then starts new workers and tells the old ones to stop
// taking connections. nginxReload waits for that (up to reloadWait), so
// that when it returns new connections get the new routing, and so that a
// reload nginx did not carry out (its master keeps the old workers and
// logs why) is an error rather than a silent success.
func nginxReload(ctx context.Context) error {
	master, old := nginxWorkers()
	if _, err := os.Stat(systemdRunDir); err == nil {
		if out, err := runTool(ctx, systemctlCommand, "reload", "nginx"); err != nil {
			return fmt.Errorf("systemctl reload nginx failed (see journalctl -u nginx): %s", quoteOutput(out, err))
		}
	} else if out, err := runTool(ctx, nginxCommand, "-s", "reload"); err != nil {
		return fmt.Errorf("nginx -s reload failed (is nginx running? the node's setup starts it): %s", quoteOutput(out, err))
	}
	if master == 0 {
		return nil // no master found before the reload: nothing to watch
	}
	deadline := time.Now().Add(reloadWait)
	for {
		_, now := nginxWorkers()
		if len(now) > 0 && !slices.ContainsFunc(now, func(pid int) bool { return slices.Contains(old, pid) }) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx (master pid %d) was told to reload, but %s later its old workers still take connections: "+
				"it did not load the new configuration; see /var/log/nginx/error.log", master, reloadWait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for nginx to reload: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// nginxWorkers returns nginx's master pid (from its pid file) and the pids
// of its workers that take connections: children titled "nginx: worker
// process" (a worker told to stop renames itself "... is shutting down").
// It returns 0 when there is no live master.
func nginxWorkers() (master int, workers []int) {
	data, err := os.ReadFile(nginxPidFile)
	if err != nil {
		return 0, nil
	}
	master, err = strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || master <= 0 || parentPID(master) < 0 {
		return 0, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentPID(pid) != master {
			continue
		}
		// nginx writes its title over its arguments: "TITLE\0".
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		title, _, _ := strings.Cut(string(cmdline), "\x00")
		if err == nil && strings.TrimSpace(title) == "nginx: worker process" {
			workers = append(workers, pid)
		}
	}
	return master, workers
}

// parentPID reads pid's parent from /proc/PID/stat; -1 when pid is gone.
func parentPID(pid int) int {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return -1
	}
	// "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}

// runTool runs a system tool, found in PATH or in the sbin directories a
// minimal PATH (an SSH session) may lack, and returns its output.
func runTool(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, nginxTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, toolPath(name), args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

func toolPath(name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	return name // exec reports it missing
}

func isExecutable(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

// nginxLogPrefix is the time and pid nginx starts its messages with; the
// level that follows is kept.
var nginxLogPrefix = regexp.MustCompile(`(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (\[\w+\]) \d+#\d+: `)

// quoteOutput is a tool's output for an error message: its text, trimmed
// and bounded, or the exit error when it printed nothing.
func quoteOutput(out []byte, err error) string {
	text := strings.TrimSpace(nginxLogPrefix.ReplaceAllString(string(out), "nginx: $1 "))
	if len(text) > 2000 {
		text = text[:2000] + "..."
	}
	if text == "" {
		return err.Error()
	}
	return fmt.Sprintf("%s (%v)", strings.ReplaceAll(text, "\n", "; "), err)
}
