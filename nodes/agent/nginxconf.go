package agent

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/gitreceive/gitreceive/services"
)

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

// release is what one server block routes to: a slot's stable paths
// (routelinks.go), never a release's own, so that a switch rewrites
// nothing here.
type release struct {
	name    string // "the live release", "the previous release"
	socket  string // the link to the vassal's uwsgi socket
	static  string // the release's static/ directory, through the link
	phpRoot string // php: the directory whose non-PHP files nginx serves; "" for python
}

// releaseOf is slot's release; n is the release the slot points at now,
// whose vassal socket must be one a unix socket address can hold too.
func (ri runtimeInstance) releaseOf(s routeSlot, n int, spec Spec) (release, error) {
	r := release{
		name:   "the live release",
		socket: ri.slotSocket(s),
		static: filepath.Join(ri.slotRelease(s), "static"),
	}
	if s == prevSlot {
		r.name = "the previous release"
	}
	if spec.Platform == "php" {
		r.phpRoot = filepath.Join(ri.slotRelease(s), spec.PHPRoot)
		if err := checkNginxPath("php_root directory", r.phpRoot); err != nil {
			return r, err
		}
	}
	for _, p := range []string{r.socket, ri.socketPath(n)} {
		if err := checkNginxPath("socket path", p); err != nil {
			return r, err
		}
		if len(p) > maxSocketPath {
			return r, fmt.Errorf("socket path %s is longer than the %d bytes a unix socket address holds", p, maxSocketPath)
		}
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
	cur, err := ri.releaseOf(liveSlot, live, spec)
	if err != nil {
		return "", err
	}
	wr, err := ri.writableRoot(spec)
	if err != nil {
		return "", err
	}

	w := &confWriter{rt: rt, logs: logs, disabled: disabled, timeout: spec.Harakiri + readTimeoutMargin, writableRoot: wr}
	if err := w.setTLS(ri, spec, groups, prev > 0); err != nil {
		return "", err
	}
	// Which release is live is the links' business, not this file's:
	// the text stays the same from one release to the next.
	state := "the release at " + cur.socket
	if prev > 0 {
		state += ", the previous one at prev.HOST"
	}
	if wr != "" {
		state += ", writable root " + wr
	}
	if disabled {
		state += ", disabled (503)"
	}
	fmt.Fprintf(&w.b, "# Routing of %s/%s: %s.\n", app, instance, state)
	fmt.Fprintf(&w.b, "# Written by the gitreceive node agent; a deploy re-points links and rewrites this only when hosts or locations change.\n")
	fmt.Fprintf(&w.b, "%s%s %s\n", instanceHeader, app, instance)
	for _, g := range groups {
		w.server(g.host, g.paths, cur)
	}
	if prev > 0 {
		old, err := ri.releaseOf(prevSlot, prev, spec)
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
	tlsConf             // HTTPS (nginxtls.go)
}

func (w *confWriter) line(indent int, format string, args ...any) {
	w.b.WriteString(strings.Repeat("    ", indent))
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

// server writes one server block: host's paths routed to r.
func (w *confWriter) server(host string, paths []string, r release) {
	w.line(0, "")
	if w.redirects(host) {
		w.redirectServer(host)
	}
	w.line(0, "server {")
	w.listens(host)
	w.line(1, "server_name %s;", host)
	w.line(1, "access_log %s;", filepath.Join(w.logs, "access.log"))
	w.line(1, "error_log %s;", filepath.Join(w.logs, "error.log"))
	w.line(1, "client_max_body_size %s;", maxBodySize)
	w.tlsDirectives(host)
	w.acmeLocation()
	if !w.disabled {
		if w.writableRoot != "" {
			w.line(1, "# static/ of %s answers first, then the writable root; what is a file in neither goes to the app.", r.name)
		} else {
			w.line(1, "# static/ of %s answers first; what is not a file there goes to the app.", r.name)
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
