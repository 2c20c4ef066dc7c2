package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
)

// Routing: one nginx file per instance in Runtime.NginxDir, included by
// server-files' catch-all (conf.d/gitreceive.conf) at http level. The file
// names the instance's route links (routelinks.go), not a release: a
// switch re-points the links, and nginx is tested and reloaded only when
// the file's text changes (hosts, locations, disable, timeouts).

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

// Route points the instance's route links at release live and (prev > 0)
// prev, and writes its nginx server blocks to rt.nginxPath(app, instance)
// when they differ from the file there, then has nginx check the whole
// configuration and reloads it. It says why it reloaded ("" when it did
// not: the common switch, from one release to the next).
//
// Every location of spec goes to the live release (its vassal's socket,
// its static/ files first, then the instance's writable root when
// spec.Services lists writable_root); with prev > 0, "prev." + each
// location's host goes to release prev the same way (with the same
// writable root). disabled answers every location with the 503 page
// without contacting the app. A location host that another instance's file
// serves is refused before anything is written. When nginx -t rejects the
// configuration, the previous file is put back (or the new one removed),
// the links are left as they were, and the error quotes nginx. Route
// returns once the links are renamed and the reload (if any) is done.
func (ri runtimeInstance) route(ctx context.Context, live, prev int, spec Spec, disabled bool) (reloaded string, err error) {
	rt, app, instance := ri.rt, ri.app, ri.name
	if err := checkInstanceNames(app, instance); err != nil {
		return "", err
	}
	text, err := ri.renderNginx(live, prev, spec, disabled)
	if err != nil {
		return "", fmt.Errorf("routing %s/%s: %w", app, instance, err)
	}
	for _, dir := range []string{rt.NginxDir, rt.RoutesDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("routing %s/%s: %w", app, instance, err)
		}
	}
	unlock, err := lockNginxDir(ctx, rt.NginxDir)
	if err != nil {
		return "", fmt.Errorf("routing %s/%s: %w", app, instance, err)
	}
	defer unlock()

	path := ri.nginxPath()
	old, hadOld, err := readOld(path)
	if err != nil {
		return "", fmt.Errorf("routing %s/%s: %w", app, instance, err)
	}
	changed := !hadOld || string(old) != text
	if changed {
		if err := ri.writeTested(ctx, spec, path, text, old, hadOld); err != nil {
			return "", err
		}
		reloaded = reloadReason(string(old), hadOld, text, ri.slotSocket(liveSlot))
	}
	wasLive, wasPrev := ri.pointed(liveSlot), ri.pointed(prevSlot)
	if err := ri.pointSlots(live, prev); err != nil {
		if changed {
			err = errors.Join(err, restoreConf(path, old, hadOld))
		}
		return "", fmt.Errorf("routing %s/%s: %w", app, instance, err)
	}
	if !changed {
		return "", nil
	}
	if err := nginxReload(ctx); err != nil {
		err = errors.Join(err, ri.restoreSlots(wasLive, wasPrev))
		return "", fmt.Errorf("routing %s/%s: %s is in place and nginx -t accepts it, but %w", app, instance, path, err)
	}
	return reloaded, nil
}

// writeTested writes text to path (the instance's nginx file, whose
// previous content was old) after checking its hosts against the other
// instances' files, and has nginx test the whole configuration; on
// failure the previous file is put back.
func (ri runtimeInstance) writeTested(ctx context.Context, spec Spec, path, text string, old []byte, hadOld bool) error {
	app, instance := ri.app, ri.name
	if err := ri.checkHostConflicts(spec); err != nil {
		return err
	}
	// nginx -t opens the log files (as root, creating them): their
	// directory must exist before the test.
	if err := os.MkdirAll(ri.nginxLogsDir(), 0o711); err != nil {
		return fmt.Errorf("routing %s/%s: logs: %w", app, instance, err)
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
	return nil
}

// reloadReason says why an instance's nginx file changed from old to
// text, for the push: the hosts it gained or lost, else what else did.
// liveSocket is the instance's live socket link, which every file of the
// route-link layout names.
func reloadReason(old string, hadOld bool, text, liveSocket string) string {
	now := serverNames(text)
	if !hadOld {
		return "new host " + strings.Join(now, ", ")
	}
	before := serverNames(old)
	var parts []string
	if added := missingFrom(now, before); len(added) > 0 {
		parts = append(parts, "new host "+strings.Join(added, ", "))
	}
	if gone := missingFrom(before, now); len(gone) > 0 {
		parts = append(parts, "host "+strings.Join(gone, ", ")+" removed")
	}
	if len(parts) > 0 {
		return strings.Join(parts, "; ")
	}
	if !strings.Contains(old, liveSocket) {
		return "routes moved to links that a switch re-points (once per instance)"
	}
	return "locations or settings changed"
}

// missingFrom is what of these is not in those, in order.
func missingFrom(these, those []string) []string {
	var out []string
	for _, h := range these {
		if !slices.Contains(those, h) && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// Unroute removes the instance's nginx file and reloads nginx, then
// removes its socket links; an instance without a file is not an error.
// As with Route, a configuration nginx rejects (someone else's broken
// file) puts the file back, so what is on disk stays what nginx serves and
// a retry does the whole job.
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
		return ri.removeSocketLinks()
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
	return ri.removeSocketLinks()
}

// removeSocketLinks removes the instance's links in RoutesDir (the
// release links are the instance directory's current and previous, which
// their own owners remove).
func (ri runtimeInstance) removeSocketLinks() error {
	var errs []error
	for _, s := range []routeSlot{liveSlot, prevSlot} {
		if err := os.Remove(ri.slotSocket(s)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unrouting %s/%s: %w", ri.app, ri.name, err))
		}
	}
	return errors.Join(errs...)
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
	if app, instance, ok := confInstance(conf); ok {
		return "instance " + app + "/" + instance
	}
	return "the file " + filepath.Base(path)
}
