package apps

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/receiver/certs"
)

// Defaults for Config.
const (
	DefaultDataDir          = "/var/lib/gitreceive"
	DefaultListen           = ":2222"
	DefaultLockTimeout      = 10 * time.Minute
	DefaultReleaseSizeLimit = 1 << 30
	DefaultDomain           = "localhost"
	DefaultKeepReleases     = 5
	DefaultRunTimeout       = time.Hour
	DefaultShutdownTimeout  = 10 * time.Minute
	ConfigFileName          = "gitreceive.ini"
)

// Config is the receiver's settings. Each one comes from, in this order of
// precedence: the --listen flag (listen only), the environment
// (GITRECEIVE_ and the key in capitals; GITRECEIVE_DATA for the data dir),
// DATA/gitreceive.ini, then the defaults (settingsTable).
type Config struct {
	DataDir     string
	Listen      string
	LockTimeout time.Duration // how long a push waits for another push of the same app
	// ReleaseSizeLimit is the largest release (sum of file sizes) accepted.
	ReleaseSizeLimit int64
	// Domain names an app's default host, APP.DOMAIN, when its app.ini
	// has no default_location.
	Domain string
	// KeepReleases is how many releases of an instance stay on its nodes.
	KeepReleases int
	// RunTimeout stops a `run` without a terminal (0: never).
	RunTimeout time.Duration
	// ShutdownTimeout bounds how long a stopping receiver waits for the
	// pushes and commands in flight before it cancels them (see
	// receiver.Server.Shutdown).
	ShutdownTimeout time.Duration
	// StagingBranches are globs of the branches (other than main and
	// master) deployed as staging instances; nil deploys every branch,
	// empty none. An app's [staging] branches can only narrow it.
	StagingBranches []string
	// StagingIdle stops the workers of a staging instance after this long
	// without a request; they start again on the next one (0: never).
	StagingIdle time.Duration
	// StagingWorkersOff (`staging_workers = off`) keeps the workers and
	// cron jobs of staging instances from running; production's always run.
	StagingWorkersOff bool
	// CronCheck is how often the daemon checks the instances' cron nodes
	// (0: the default, DefaultCronCheck).
	CronCheck time.Duration
	// DeployOff (`deploy = false`) makes the receiver a plain git mirror:
	// pushes are authorized, checked and accepted, and nothing is built
	// or deployed. The zero value deploys, so a Config built in code does.
	DeployOff bool
	// Limits are default_memory, max_memory, default_max_processes and
	// max_processes: what an instance gets on each node when its app.ini
	// does not say, and the most it may ask for. Zero fields are the
	// defaults (appconfig.DefaultLimits).
	Limits appconfig.Limits
	// AllowedServices are the services deploys may ask for (`services`;
	// nil: every one): the first deploy that asks for one installs its
	// server, so which servers run is the operator's decision.
	AllowedServices []string
	// PackagesAllowed are globs of the Debian packages an app's packages =
	// may have installed on the nodes (`packages_allowed`; nil: the
	// default, DefaultPackagesAllowed). They are installed as root, so
	// which ones is the operator's decision.
	PackagesAllowed []string
	Version         string
	// HTTPS is https (on, off, auto: on once ACMEEmail is set); ACME*
	// are acme_email, acme_directory and acme_ca (a PEM file's path).
	HTTPS         string
	ACMEEmail     string
	ACMEDirectory string
	ACMECA        string
	// Warnings are what LoadConfig found odd in gitreceive.ini without
	// refusing it (an unknown key, a key set twice, a section), each one
	// naming the file, line and key; whoever loads the config logs them.
	Warnings []string
}

// DefaultPackagesAllowed lets deployers ask for Python modules and PHP
// extensions from Debian, nothing that runs as a service of its own.
var DefaultPackagesAllowed = []string{"python3-*", "php-*", "php8.*-*"}

// ResolveDataDir picks the data dir from the flag, the environment or the default.
func ResolveDataDir(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv("GITRECEIVE_DATA"); v != "" {
		return v
	}
	return DefaultDataDir
}

// defaultConfig is the settings before any source is read.
// DefaultCronCheck is cron_check's default.
const DefaultCronCheck = 30 * time.Second

func defaultConfig(dataDir string) Config {
	return Config{DataDir: dataDir, Listen: DefaultListen, LockTimeout: DefaultLockTimeout, ReleaseSizeLimit: builder.DefaultSizeLimit,
		Domain: DefaultDomain, KeepReleases: DefaultKeepReleases, RunTimeout: DefaultRunTimeout, CronCheck: DefaultCronCheck,
		ShutdownTimeout: DefaultShutdownTimeout, Limits: appconfig.DefaultLimits(),
		HTTPS: "auto", ACMEDirectory: certs.DefaultDirectory}
}

// LoadConfig reads DATA/gitreceive.ini (optional) and applies the
// environment and the flag value for listen (empty when not given).
func LoadConfig(dataDir, listenFlag string) (Config, error) {
	// The hook socket's path and git's HOME are handed to processes that
	// run in a repository's directory: a relative data dir would not
	// resolve there, and every push would fail to reach the daemon.
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	c := defaultConfig(dataDir)
	path := filepath.Join(dataDir, ConfigFileName)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return c, fmt.Errorf("reading %s: %w", path, err)
	}
	file, err := parseSettingsFile(path, data)
	if err != nil {
		return c, err
	}
	c.Warnings = file.warnings
	values := file.values
	for _, s := range settingsTable {
		if v := os.Getenv(s.envName()); v != "" {
			values[s.key] = settingValue{value: v, source: "environment " + s.envName()}
		}
	}
	if listenFlag != "" {
		values["listen"] = settingValue{value: listenFlag, source: "--listen"}
	}
	if err := applySettings(&c, values); err != nil {
		return c, err
	}
	if c.HTTPS == "on" && c.ACMEEmail == "" {
		return c, fmt.Errorf("%s: https = on needs acme_email: set it to the address the CA may write to", values["https"].where())
	}
	return c, checkLimits(c.Limits, values, path)
}

// applySettings reads every value given into c, in the table's order.
func applySettings(c *Config, values map[string]settingValue) error {
	for _, s := range settingsTable {
		v, ok := values[s.key]
		if !ok {
			continue
		}
		if err := s.set(c, v.value); err != nil {
			if s.list {
				return fmt.Errorf("%s: %s: %w", v.where(), s.key, err)
			}
			return fmt.Errorf("%s: %s = %q %w", v.where(), s.key, v.value, err)
		}
	}
	return nil
}

// parseOnOff reads a boolean setting: true/false, yes/no, on/off, 1/0, in
// any case.
func parseOnOff(v string) (on, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "on", "1":
		return true, true
	case "false", "no", "off", "0":
		return false, true
	}
	return false, false
}

// checkLimits refuses a default above its cap: it would refuse every
// app.ini that leaves the key out. The message starts where the operator
// set the cap (or the default, when the cap is the default's).
func checkLimits(l appconfig.Limits, values map[string]settingValue, path string) error {
	for _, pair := range []struct {
		defaultKey, capKey string
		def, cap           int
		format             func(int) string
	}{
		{"default_memory", "max_memory", l.DefaultMemoryMB, l.MaxMemoryMB, appconfig.FormatSize},
		{"default_max_processes", "max_processes", l.DefaultMaxProcesses, l.MaxProcesses, strconv.Itoa},
	} {
		if pair.def <= pair.cap {
			continue
		}
		at := settingValue{source: path}
		if v, ok := values[pair.capKey]; ok {
			at = v
		} else if v, ok := values[pair.defaultKey]; ok {
			at = v
		}
		return fmt.Errorf("%s: %s = %s%s is more than %s = %s%s; lower %s or raise %s",
			at.where(), pair.defaultKey, pair.format(pair.def), originNote(values, pair.defaultKey, at.source),
			pair.capKey, pair.format(pair.cap), originNote(values, pair.capKey, at.source), pair.defaultKey, pair.capKey)
	}
	return nil
}

// originNote marks a value in a message with where it was set when that is
// not the source the message starts with, and as the default when nothing
// set it, so that the operator knows which line to change or add.
func originNote(values map[string]settingValue, key, source string) string {
	v, ok := values[key]
	switch {
	case !ok:
		return " (the default)"
	case v.source != source:
		return " (" + v.where() + ")"
	}
	return ""
}

// parseMemorySetting reads default_memory or max_memory; its errors
// continue "KEY = VALUE".
func parseMemorySetting(value string) (int, error) {
	mb, err := appconfig.ParseSize(value)
	switch {
	case errors.Is(err, appconfig.ErrSizeTooLarge):
		return 0, fmt.Errorf("is more than %s; lower it", appconfig.FormatSize(appconfig.MemoryCeilingMB))
	case err != nil:
		return 0, errors.New("is not a size such as 512M or 4G (a plain number is megabytes)")
	case mb < appconfig.MinMemoryMB:
		return 0, fmt.Errorf("is less than %dM, the least an instance can run in; raise it", appconfig.MinMemoryMB)
	}
	return mb, nil
}

// parseProcessesSetting reads default_max_processes or max_processes.
func parseProcessesSetting(value string) (int, error) {
	n, err := strconv.Atoi(value)
	if err != nil || n < appconfig.MinMaxProcesses || n > appconfig.ProcessesCeiling {
		return 0, fmt.Errorf("must be a whole number from %d to %d (processes and threads an instance may run at once)",
			appconfig.MinMaxProcesses, appconfig.ProcessesCeiling)
	}
	return n, nil
}

// Paths inside the data dir.
func (c Config) HostKeyPath() string  { return filepath.Join(c.DataDir, "ssh_host_ed25519_key") }
func (c Config) KeyStorePath() string { return filepath.Join(c.DataDir, "authorized_keys") }
func (c Config) ReposDir() string     { return filepath.Join(c.DataDir, "repos") }
func (c Config) RunDir() string       { return filepath.Join(c.DataDir, "run") }
func (c Config) releasesDir() string  { return filepath.Join(c.DataDir, "releases") }
func (c Config) HookSocket() string   { return filepath.Join(c.RunDir(), "hook.sock") }

// KeyStorePath is where the key store lives for this data dir.
func KeyStorePath(dataDir string) string { return Config{DataDir: dataDir}.KeyStorePath() }

var packageGlob = regexp.MustCompile(`^[a-z0-9*?][a-z0-9+.*?-]*$`)

// parsePackageGlobs reads "python3-* php-*" (or "none").
func parsePackageGlobs(value string) ([]string, error) {
	globs := []string{}
	if strings.TrimSpace(value) == "none" {
		return globs, nil
	}
	for _, g := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' }) {
		if _, err := path.Match(g, ""); err != nil || !packageGlob.MatchString(g) {
			return nil, fmt.Errorf("%q is not a package name or glob (lowercase letters, digits, + . - and * ?); write e.g. python3-* php-*, or none", g)
		}
		globs = append(globs, g)
	}
	return globs, nil
}
