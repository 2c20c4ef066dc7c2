package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/manifest"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agent/pysupport"
)

// Spec is how a release runs, sent by the receiver to `start` (one JSON
// document on stdin) and kept beside the release as vN.spec.json, so that
// `activate` can route to it later without the receiver resending it.
// Everything in it comes over the wire: Validate checks it as untrusted.
type Spec struct {
	Platform string `json:"platform"`           // "python" or "php"
	Runner   string `json:"runner"`             // release-relative file: the WSGI script, or PHP's front controller
	Callable string `json:"callable,omitempty"` // python: the WSGI object's name (default "application")
	PHPRoot  string `json:"php_root,omitempty"` // php: release-relative directory served ("" = the release root)

	// Locations route to the instance: the first is its canonical one.
	// The previous release answers at "prev." + Host with the same path.
	Locations []Location `json:"locations"`

	HealthCheck        string      `json:"health_check"`                   // URL path, "/..."; any status < 500 = healthy
	HealthCheckTimeout int         `json:"health_check_timeout,omitempty"` // seconds (default 30)
	UpdateFetch        []FetchStep `json:"update_fetch,omitempty"`         // run against the new release before the switch

	Workers     int `json:"workers,omitempty"`       // worker processes (default 2)
	Harakiri    int `json:"harakiri,omitempty"`      // seconds before a stuck request's worker is killed (default 60)
	MaxRequests int `json:"max_requests,omitempty"`  // requests before a worker is recycled (default 5000)
	ReloadOnRSS int `json:"reload_on_rss,omitempty"` // MB of resident memory before a worker is recycled (default 512)
	// IdleStop, when set, stops the workers after that many seconds
	// without a request; the master keeps the socket and starts them on
	// the next one (staging instances nobody is looking at).
	IdleStop int `json:"idle_stop,omitempty"`

	// Env is what the receiver hands the app: SILVER_*, CONFIG_* (app.ini
	// config.* and, later, services). The agent adds TEMP, SILVER_LOGS and
	// SILVER_SECRET_FILE itself, since those are paths on the node.
	Env map[string]string `json:"env"`

	// Services are the app.ini service.NAME names, shown by `apps`; the
	// services themselves reach the app through Env.
	Services []string `json:"services,omitempty"`

	// Packages are app.ini's packages =, installed on the node before the
	// release starts; kept here so that `nodes setup` installs what live
	// instances need on a new node.
	Packages []string `json:"packages,omitempty"`

	// Secret is the instance's secret (SILVER_SECRET_FILE's content, what
	// silversupport's get_secret returns): the receiver's, the same on
	// every node. "" (an older receiver): each node makes its own once.
	Secret string `json:"secret,omitempty"`

	// KeepReleases is how many releases (live included) stay on the node
	// after a successful switch; older ones are removed (default 5).
	KeepReleases int `json:"keep_releases,omitempty"`

	// What the instance may use on the node (DESIGN.md decision 9), from
	// app.ini's memory, max_processes and cpu_weight or the receiver's
	// defaults; the receiver has held them to its caps. 0 means the default.
	MemoryMB     int `json:"memory_mb"`     // MB all its processes may use together (cgroup memory.max; default 512)
	MaxProcesses int `json:"max_processes"` // processes and threads at once (pids.max; default 128)
	CPUWeight    int `json:"cpu_weight"`    // CPU share against other instances (cpu.weight, 1-10000; default 100)

	// Background processes (DESIGN.md decision 11, workerspec.go): the
	// workers run beside the web vassal from the switch on; Singletons
	// says whether this node runs the workers of nodes = one. The cron
	// jobs run on the node the receiver chose for each (CronNodes).
	BackgroundWorkers []WorkerSpec `json:"background_workers,omitempty"`
	Singletons        bool         `json:"singletons,omitempty"`
	CronJobs          []CronSpec   `json:"cron_jobs,omitempty"`
	CronTimezone      string       `json:"cron_timezone,omitempty"` // IANA Area/City; "" is UTC

	// HTTPS is app.ini's https: "optional" ("" too: both schemes once a
	// host has a certificate), "required" (HTTP answers 308 to HTTPS and
	// HTTPS sends Strict-Transport-Security) or "off" (HTTP only).
	HTTPS string `json:"https,omitempty"`
}

// Location is HOST[/PATH] (Silver Lining's term).
type Location struct {
	Host string `json:"host"`           // lowercase DNS name
	Path string `json:"path,omitempty"` // "" or "/prefix" without a trailing slash
}

func (l Location) String() string { return l.Host + l.Path }

// FetchStep is one update_fetch entry: a URL path requested through the new
// release's socket, or a script run in the release as the app user.
type FetchStep struct {
	URLPath string   `json:"url_path,omitempty"`
	Script  string   `json:"script,omitempty"` // release-relative
	Args    []string `json:"args,omitempty"`
}

// Spec defaults and bounds.
const (
	DefaultCallable           = "application"
	DefaultHealthCheckTimeout = 30
	DefaultWorkers            = 2
	DefaultHarakiri           = 60
	DefaultMaxRequests        = 5000
	DefaultReloadOnRSS        = 512
	DefaultKeepReleases       = 5
	DefaultMemoryMB           = 512
	DefaultMaxProcesses       = 128
	DefaultCPUWeight          = 100
)

// Bounds of the resource fields. Below the minimums no instance runs (a
// uWSGI master and a worker); above the maxima the cgroup files refuse the
// number (pids.max past pid_max's ceiling, cpu.weight past 10000), or, for
// memory (16 TiB), the number would only be a way to get no limit at all.
const (
	minMemoryMB     = 32
	maxMemoryMB     = 16 << 20
	minMaxProcesses = 8
	maxMaxProcesses = 4194304
	maxCPUWeight    = 10000
)

var (
	urlPathPart = regexp.MustCompile(`^[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$`)
	envName     = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,127}$`)
	identifier  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	// timezoneName is an IANA zone name as cron_timezone allows (the
	// receiver checked it against its zone database).
	timezoneName = regexp.MustCompile(`^(UTC|[A-Z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){1,2})$`)
)

// WithDefaults returns s with zero values replaced by the defaults.
func (s Spec) WithDefaults() Spec {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&s.HealthCheckTimeout, DefaultHealthCheckTimeout)
	def(&s.Workers, DefaultWorkers)
	def(&s.Harakiri, DefaultHarakiri)
	def(&s.MaxRequests, DefaultMaxRequests)
	def(&s.ReloadOnRSS, DefaultReloadOnRSS)
	def(&s.KeepReleases, DefaultKeepReleases)
	def(&s.MemoryMB, DefaultMemoryMB)
	def(&s.MaxProcesses, DefaultMaxProcesses)
	def(&s.CPUWeight, DefaultCPUWeight)
	if s.Platform == "python" && s.Callable == "" {
		s.Callable = DefaultCallable
	}
	if s.HealthCheck == "" {
		s.HealthCheck = "/"
	}
	return s
}

// Validate checks a spec from the wire. Its values end up in uWSGI and
// nginx configuration files, so everything is held to allow-lists: no
// quote, newline, brace, semicolon or '%' can reach those files except
// through Env values, which are written to the env file only.
func (s Spec) Validate() error {
	if s.Secret != "" && !manifest.IsSHA256(s.Secret) {
		return errors.New("the instance's secret is not 64 hex digits")
	}
	for _, p := range s.Packages {
		if !names.IsDebianPackage(p) {
			return fmt.Errorf("package %q is not a Debian package name", p)
		}
	}
	for _, check := range []func() error{s.validatePlatform, s.validateLocations, s.validateUpdateFetch, s.validateNumbers, s.validateHTTPS, s.validateProcesses} {
		if err := check(); err != nil {
			return err
		}
	}
	for k, v := range s.Env {
		if !envName.MatchString(k) || strings.ContainsAny(v, "\x00\n\r") {
			return fmt.Errorf("env %q: names are A-Z, 0-9 and _, values one line", k)
		}
	}
	return nil
}

// validatePlatform checks the platform and what runs the app.
func (s Spec) validatePlatform() error {
	switch s.Platform {
	case "python":
		if !identifier.MatchString(s.Callable) {
			return fmt.Errorf("callable %q is not a Python identifier", s.Callable)
		}
		if !strings.HasSuffix(s.Runner, ".py") {
			return fmt.Errorf("runner %q is not a .py file", s.Runner)
		}
	case "php":
		if !strings.HasSuffix(s.Runner, ".php") {
			return fmt.Errorf("runner %q is not a .php file", s.Runner)
		}
		if s.PHPRoot != "" {
			if err := checkSafeRelPath(s.PHPRoot); err != nil {
				return fmt.Errorf("php_root: %w", err)
			}
		}
	default:
		return fmt.Errorf("unknown platform %q", s.Platform)
	}
	if err := checkSafeRelPath(s.Runner); err != nil {
		return fmt.Errorf("runner: %w", err)
	}
	return nil
}

// validateLocations checks where the app answers and its health check.
func (s Spec) validateLocations() error {
	if len(s.Locations) == 0 || len(s.Locations) > 64 {
		return fmt.Errorf("a release needs 1 to 64 locations, got %d", len(s.Locations))
	}
	hosts := map[string]bool{}
	for _, l := range s.Locations {
		hosts[l.Host] = true
	}
	seen := map[Location]bool{}
	for _, l := range s.Locations {
		if seen[l] {
			return fmt.Errorf("location %s is listed twice", l)
		}
		seen[l] = true
		if hosts["prev."+l.Host] {
			return fmt.Errorf("location host prev.%s is where the previous release of %s answers", l.Host, l.Host)
		}
		if len(l.Host) > 248 || !names.IsHost(l.Host) {
			return fmt.Errorf("location host %q is not a lowercase DNS name", l.Host)
		}
		if l.Path != "" && (!strings.HasPrefix(l.Path, "/") || strings.HasSuffix(l.Path, "/") || !urlPathPart.MatchString(l.Path) || path.Clean(l.Path) != l.Path || strings.Contains(l.Path, "%")) {
			return fmt.Errorf("location path %q must be /prefix without a trailing slash, dots or escapes", l.Path)
		}
	}
	if !strings.HasPrefix(s.HealthCheck, "/") || !urlPathPart.MatchString(s.HealthCheck) || len(s.HealthCheck) > 1024 {
		return fmt.Errorf("health_check %q is not a URL path", s.HealthCheck)
	}
	return nil
}

func (s Spec) validateUpdateFetch() error {
	for _, f := range s.UpdateFetch {
		switch {
		case f.URLPath != "" && f.Script == "":
			if !strings.HasPrefix(f.URLPath, "/") || !urlPathPart.MatchString(f.URLPath) || len(f.URLPath) > 1024 {
				return fmt.Errorf("update_fetch %q is not a URL path", f.URLPath)
			}
		case f.Script != "" && f.URLPath == "":
			if err := checkSafeRelPath(f.Script); err != nil {
				return fmt.Errorf("update_fetch script: %w", err)
			}
			for _, a := range f.Args {
				if strings.ContainsRune(a, 0) {
					return fmt.Errorf("update_fetch script %s: an argument holds NUL", f.Script)
				}
			}
		default:
			return fmt.Errorf("update_fetch entry needs exactly one of url_path and script")
		}
	}
	return nil
}

// validateNumbers checks the uWSGI settings and the cgroup limits.
func (s Spec) validateNumbers() error {
	for name, v := range map[string]int{"health_check_timeout": s.HealthCheckTimeout, "workers": s.Workers, "harakiri": s.Harakiri,
		"max_requests": s.MaxRequests, "reload_on_rss": s.ReloadOnRSS, "keep_releases": s.KeepReleases, "idle_stop": s.IdleStop} {
		if v < 0 || v > 1_000_000 {
			return fmt.Errorf("%s = %d is out of range", name, v)
		}
	}
	// 0 is the default; the rest is written into cgroup files, where
	// nonsense would fail the start or lift the limit.
	for _, b := range []struct {
		name     string
		v        int
		min, max int
	}{
		{"memory_mb", s.MemoryMB, minMemoryMB, maxMemoryMB},
		{"max_processes", s.MaxProcesses, minMaxProcesses, maxMaxProcesses},
		{"cpu_weight", s.CPUWeight, 1, maxCPUWeight},
	} {
		if b.v != 0 && (b.v < b.min || b.v > b.max) {
			return fmt.Errorf("%s = %d is out of range (%d to %d, or 0 for the default)", b.name, b.v, b.min, b.max)
		}
	}
	return nil
}

// checkSafeRelPath is manifest.CheckRelPath plus a character allow-list, for paths
// that are written into uWSGI and nginx configuration.
func checkSafeRelPath(p string) error {
	if err := manifest.CheckRelPath(p); err != nil {
		return err
	}
	if !regexp.MustCompile(`^[A-Za-z0-9._/+@-]+$`).MatchString(p) {
		return fmt.Errorf("%q has characters other than letters, digits and ._/+@-", p)
	}
	return nil
}

// HealthTimeout is the health check's time limit.
func (s Spec) healthTimeout() time.Duration {
	return time.Duration(s.WithDefaults().HealthCheckTimeout) * time.Second
}

// InstanceID is a name for APP/INSTANCE that is safe in file names and in
// uWSGI and nginx configuration (no '%', which uWSGI expands): the instance
// itself when it is plain, else a short hash of it.
func InstanceID(app, instance string) string {
	if regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`).MatchString(instance) {
		return app + "." + instance
	}
	h := sha256.Sum256([]byte(instance))
	return app + ".i" + hex.EncodeToString(h[:6])
}

// Runtime is where a node's serving stack lives. SystemRuntime is the real
// one (server-files' setup script makes its directories); tests of the
// pieces may point the paths into a temporary directory.
type Runtime struct {
	AppsDir      string // releases: AppsDir/APP/INSTANCE/releases/vN (the agent's root)
	VassalsDir   string // one uWSGI vassal file per running release: ID.vN.ini
	NginxDir     string // one server-block file per instance: ID.conf
	SocketsDir   string // vassal sockets: ID.vN.sock (root's directory; each socket instance:www-data 0660)
	RoutesDir    string // what nginx connects to: ID.sock, ID.prev.sock, links to sockets (root's directory, kept across reboots)
	LogsDir      string // LogsDir/APP/INSTANCE/: SILVER_LOGS, the instance user's (app.log)
	NginxLogsDir string // NginxLogsDir/APP/INSTANCE/{access,error}.log: root's, nginx opens them as root
	EmperorStats string // connecting wakes the emperor: it scans VassalsDir at once
	PagesDir     string // 404.html, 503.html
	NginxUser    string // nginx's workers' user: a member of every instance's group, to serve static files
	NginxGroup   string // nginx's workers' group (www-data): connects to the sockets, reads writable_root
	CertsDir     string // CertsDir/HOST/live -> ID/{fullchain,key}.pem: root's, 0700 ("": no HTTPS, tests of the pieces)
	ChallengeDir string // ACME HTTP-01 answers, served at /.well-known/acme-challenge/ for every host ("": none)
	DataDir      string // services' data kept across releases (files, writable_root); the uid high-water mark
	CgroupRoot   string // where the cgroup hierarchies are mounted ("": no per-instance cgroups, tests of the pieces)
	LogrotateDir string // logrotate's include directory: one file per instance, rotating as its user ("": none)
	PythonDir    string // gitreceive's Python support (pysupport): on every app's PYTHONPATH ("": none)
	// FixedUser, when set, runs every instance as this existing user
	// instead of its own (tests of the pieces, which must not add users
	// to the machine they run on).
	FixedUser string
}

// SystemRuntime is the runtime nodes set up by server-files have.
func SystemRuntime() Runtime {
	return Runtime{
		AppsDir:      defaultRoot,
		VassalsDir:   "/etc/gitreceive/vassals",
		NginxDir:     "/etc/gitreceive/nginx",
		SocketsDir:   "/run/gitreceive/sockets",
		RoutesDir:    "/var/lib/gitreceive/routes",
		LogsDir:      "/var/log/gitreceive/apps",
		NginxLogsDir: "/var/log/gitreceive/nginx",
		EmperorStats: "/run/gitreceive/emperor-stats.sock",
		PagesDir:     "/usr/share/gitreceive/pages",
		NginxUser:    "www-data",
		NginxGroup:   "www-data",
		CertsDir:     "/etc/gitreceive/certs",
		ChallengeDir: ChallengeDir,
		DataDir:      "/var/lib/gitreceive",
		CgroupRoot:   "/sys/fs/cgroup",
		LogrotateDir: "/etc/logrotate.d",
		PythonDir:    pysupport.Dir,
	}
}

// InstanceDir is APP/INSTANCE's directory under AppsDir.
func (rt Runtime) instanceDir(app, instance string) string {
	return filepath.Join(rt.AppsDir, app, instance)
}

// ReleaseDir is release n of APP/INSTANCE.
func (rt Runtime) releaseDir(app, instance string, n int) string {
	return releaseDir(rt.instanceDir(app, instance), n)
}

// VassalPath is release n's uWSGI vassal file.
func (rt Runtime) vassalPath(app, instance string, n int) string {
	return filepath.Join(rt.VassalsDir, InstanceID(app, instance)+".v"+strconv.Itoa(n)+".ini")
}

// SocketPath is where release n's vassal listens (uwsgi protocol).
func (rt Runtime) socketPath(app, instance string, n int) string {
	return filepath.Join(rt.SocketsDir, InstanceID(app, instance)+".v"+strconv.Itoa(n)+".sock")
}

// NginxPath is the instance's nginx server-block file.
func (rt Runtime) nginxPath(app, instance string) string {
	return filepath.Join(rt.NginxDir, InstanceID(app, instance)+".conf")
}

// InstanceNginxLogsDir holds the instance's access and error logs. It is
// not the app's SILVER_LOGS: nginx opens its logs as root, and a symlink
// the app put in its own directory would make root write anywhere.
func (rt Runtime) instanceNginxLogsDir(app, instance string) string {
	return filepath.Join(rt.NginxLogsDir, app, instance)
}

// InstanceLogsDir is SILVER_LOGS, owned by the app user: app.log and what
// the app writes itself.
func (rt Runtime) instanceLogsDir(app, instance string) string {
	return filepath.Join(rt.LogsDir, app, instance)
}

func specPath(dir string, n int) string { return releaseDir(dir, n) + ".spec.json" }

// Releases is the answer to `releases APP INSTANCE`: what a node holds.
type Releases struct {
	Current  int   `json:"current"`  // live release (0: none)
	Previous int   `json:"previous"` // the one at prev.HOST (0: none)
	Present  []int `json:"present"`  // every release on the node, oldest first
}

// runtimeInstance is one APP/INSTANCE in a runtime: what starts, stops,
// routes and runs its releases works on it.
type runtimeInstance struct {
	rt   Runtime
	app  string
	name string
}

// instance is APP/NAME in rt.
func (rt Runtime) instance(app, name string) runtimeInstance {
	return runtimeInstance{rt: rt, app: app, name: name}
}

// The instance's paths in its runtime.
func (ri runtimeInstance) id() string              { return InstanceID(ri.app, ri.name) }
func (ri runtimeInstance) dir() string             { return ri.rt.instanceDir(ri.app, ri.name) }
func (ri runtimeInstance) releaseDir(n int) string { return ri.rt.releaseDir(ri.app, ri.name, n) }
func (ri runtimeInstance) vassalPath(n int) string { return ri.rt.vassalPath(ri.app, ri.name, n) }
func (ri runtimeInstance) socketPath(n int) string { return ri.rt.socketPath(ri.app, ri.name, n) }
func (ri runtimeInstance) nginxPath() string       { return ri.rt.nginxPath(ri.app, ri.name) }
func (ri runtimeInstance) logsDir() string         { return ri.rt.instanceLogsDir(ri.app, ri.name) }
func (ri runtimeInstance) nginxLogsDir() string    { return ri.rt.instanceNginxLogsDir(ri.app, ri.name) }
