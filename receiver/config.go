// Package receiver is gitreceive's SSH front door: public-key auth against
// the key store, the allow-listed command set, C git for the wire protocol,
// per-app repositories and locks, and the unix socket the git hooks report to.
package receiver

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

	"gopkg.in/ini.v1"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/names"
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
	ConfigFileName          = "gitreceive.ini"
)

// Config is the receiver's settings. Precedence: command-line flag, then
// environment (GITRECEIVE_LISTEN, GITRECEIVE_DATA), then DATA/gitreceive.ini,
// then the defaults above.
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
	// StagingBranches are globs of the branches (other than main and
	// master) deployed as staging instances; nil deploys every branch,
	// empty none. An app's [staging] branches can only narrow it.
	StagingBranches []string
	// StagingIdle stops the workers of a staging instance after this long
	// without a request; they start again on the next one (0: never).
	StagingIdle time.Duration
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

// LoadConfig reads DATA/gitreceive.ini (optional) and applies the
// environment and the flag value for listen (empty when not given).
func LoadConfig(dataDir, listenFlag string) (Config, error) {
	// The hook socket's path and git's HOME are handed to processes that
	// run in a repository's directory: a relative data dir would not
	// resolve there, and every push would fail to reach the daemon.
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	c := Config{DataDir: dataDir, Listen: DefaultListen, LockTimeout: DefaultLockTimeout, ReleaseSizeLimit: builder.DefaultSizeLimit,
		Domain: DefaultDomain, KeepReleases: DefaultKeepReleases, RunTimeout: DefaultRunTimeout, Limits: appconfig.DefaultLimits()}
	path := filepath.Join(dataDir, ConfigFileName)
	f, err := ini.Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return c, fmt.Errorf("reading %s: %w", path, err)
	default:
		sec := f.Section("")
		if k := sec.Key("listen"); k.String() != "" {
			c.Listen = k.String()
		}
		if k := sec.Key("lock_timeout"); k.String() != "" {
			d, err := time.ParseDuration(k.String())
			if err != nil || d <= 0 {
				return c, fmt.Errorf("%s: lock_timeout = %q is not a positive duration such as 10m", path, k.String())
			}
			c.LockTimeout = d
		}
		if k := sec.Key("max_release_size"); k.String() != "" {
			n, err := k.Int64()
			if err != nil || n <= 0 {
				return c, fmt.Errorf("%s: max_release_size = %q is not a positive number of bytes", path, k.String())
			}
			c.ReleaseSizeLimit = n
		}
		if k := sec.Key("domain"); k.String() != "" {
			d := strings.ToLower(strings.TrimSuffix(k.String(), "."))
			if !names.IsHost(d) || len(d) > 200 {
				return c, fmt.Errorf("%s: domain = %q is not a DNS name such as apps.example.com", path, k.String())
			}
			c.Domain = d
		}
		if k := sec.Key("run_timeout"); k.String() != "" {
			d, err := time.ParseDuration(k.String())
			if err != nil || d < 0 {
				return c, fmt.Errorf("%s: run_timeout = %q is not a duration such as 1h (0 for none)", path, k.String())
			}
			c.RunTimeout = d
		}
		if k := sec.Key("staging_branches"); k.String() != "" {
			globs, err := parseBranchGlobs(k.String())
			if err != nil {
				return c, fmt.Errorf("%s: staging_branches: %w", path, err)
			}
			c.StagingBranches = globs
		}
		if k := sec.Key("staging_idle"); k.String() != "" {
			d, err := time.ParseDuration(k.String())
			if err != nil || d < 0 || (d > 0 && d < time.Second) || d > 7*24*time.Hour {
				return c, fmt.Errorf("%s: staging_idle = %q is not a duration from 1s to 168h, such as 30m (0 for never)", path, k.String())
			}
			c.StagingIdle = d
		}
		if k := sec.Key("keep_releases"); k.String() != "" {
			n, err := k.Int()
			if err != nil || n < 2 || n > 100 {
				return c, fmt.Errorf("%s: keep_releases = %q must be a number from 2 to 100 (the live release and the previous one at least)", path, k.String())
			}
			c.KeepReleases = n
		}
		if k := sec.Key("services"); k.String() != "" {
			names, err := parseAllowedServices(k.String())
			if err != nil {
				return c, fmt.Errorf("%s: services: %w", path, err)
			}
			c.AllowedServices = names
		}
		if k := sec.Key("packages_allowed"); k.String() != "" {
			globs, err := parsePackageGlobs(k.String())
			if err != nil {
				return c, fmt.Errorf("%s: packages_allowed: %w", path, err)
			}
			c.PackagesAllowed = globs
		}
		if k := sec.Key("deploy"); k.String() != "" {
			on, ok := parseOnOff(k.String())
			if !ok {
				return c, fmt.Errorf("%s: deploy = %q must be true or false (false: accept pushes without building or deploying them)", path, k.String())
			}
			c.DeployOff = !on
		}
		if c.Limits, err = loadLimits(path, sec); err != nil {
			return c, err
		}
	}
	if v := os.Getenv("GITRECEIVE_LISTEN"); v != "" {
		c.Listen = v
	}
	if listenFlag != "" {
		c.Listen = listenFlag
	}
	return c, nil
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

// loadLimits reads the instance resource settings, each one alone and
// then together: a default above its cap would refuse every app.ini that
// leaves the key out.
func loadLimits(path string, sec *ini.Section) (appconfig.Limits, error) {
	l := appconfig.DefaultLimits()
	for _, set := range []struct {
		key   string
		v     *int
		parse func(string) (int, error)
	}{
		{"default_memory", &l.DefaultMemoryMB, parseMemorySetting},
		{"max_memory", &l.MaxMemoryMB, parseMemorySetting},
		{"default_max_processes", &l.DefaultMaxProcesses, parseProcessesSetting},
		{"max_processes", &l.MaxProcesses, parseProcessesSetting},
	} {
		value := sec.Key(set.key).String()
		if value == "" {
			continue
		}
		n, err := set.parse(value)
		if err != nil {
			return l, fmt.Errorf("%s: %s = %q %w", path, set.key, value, err)
		}
		*set.v = n
	}
	if l.DefaultMemoryMB > l.MaxMemoryMB {
		return l, fmt.Errorf("%s: default_memory = %s%s is more than max_memory = %s; lower default_memory or raise max_memory",
			path, appconfig.FormatSize(l.DefaultMemoryMB), unsetNote(sec, "default_memory"), appconfig.FormatSize(l.MaxMemoryMB))
	}
	if l.DefaultMaxProcesses > l.MaxProcesses {
		return l, fmt.Errorf("%s: default_max_processes = %d%s is more than max_processes = %d; lower default_max_processes or raise max_processes",
			path, l.DefaultMaxProcesses, unsetNote(sec, "default_max_processes"), l.MaxProcesses)
	}
	return l, nil
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

// unsetNote marks a value in a message as the default when the file does
// not set it, so that the operator knows which line to add.
func unsetNote(sec *ini.Section, key string) string {
	if sec.Key(key).String() == "" {
		return " (the default)"
	}
	return ""
}

// Paths inside the data dir.
func (c Config) hostKeyPath() string  { return filepath.Join(c.DataDir, "ssh_host_ed25519_key") }
func (c Config) keyStorePath() string { return filepath.Join(c.DataDir, "authorized_keys") }
func (c Config) reposDir() string     { return filepath.Join(c.DataDir, "repos") }
func (c Config) runDir() string       { return filepath.Join(c.DataDir, "run") }
func (c Config) releasesDir() string  { return filepath.Join(c.DataDir, "releases") }
func (c Config) hookSocket() string   { return filepath.Join(c.runDir(), "hook.sock") }

// KeyStorePath is where the key store lives for this data dir.
func KeyStorePath(dataDir string) string { return Config{DataDir: dataDir}.keyStorePath() }

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
