package apps

import (
	"errors"
	"net/mail"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/receiver/certs"
)

// setting is one key of gitreceive.ini: its default and what it does, as
// README's settings table writes them (a test holds the two together), and
// how a value is read into a Config.
type setting struct {
	key, def, doc string
	// set reads a non-empty value into c. Its error says what is allowed;
	// it continues "KEY = VALUE ", or "KEY: " when list is set (the error
	// then names the wrong item itself).
	set  func(c *Config, value string) error
	list bool
}

// envName is the environment variable that overrides the file's key.
func (s setting) envName() string { return "GITRECEIVE_" + strings.ToUpper(s.key) }

// settingsTable is every receiver setting, in README's order.
var settingsTable = []setting{
	{key: "listen", def: DefaultListen, doc: "the SSH address",
		set: func(c *Config, v string) error { c.Listen = v; return nil }},
	{key: "lock_timeout", def: "10m", doc: "how long a push waits for another push of the same app",
		set: durationSetting(func(c *Config) *time.Duration { return &c.LockTimeout }, func(d time.Duration) bool { return d > 0 },
			"is not a positive duration such as 10m")},
	{key: "max_release_size", def: "1073741824", doc: "bytes a release may hold", set: setReleaseSize},
	{key: "domain", def: DefaultDomain,
		doc: "an app without `default_location` answers at `APP.DOMAIN`, a staging branch at `BRANCH.APP.DOMAIN`", set: setDomain},
	{key: "keep_releases", def: "5", doc: "releases kept on each node (2-100)", set: setKeepReleases},
	{key: "run_timeout", def: "1h", doc: "stops a `run` without a terminal (`0`: never)",
		set: durationSetting(func(c *Config) *time.Duration { return &c.RunTimeout }, func(d time.Duration) bool { return d >= 0 },
			"is not a duration such as 1h (0 for none)")},
	{key: "shutdown_timeout", def: "10m",
		doc: "how long a stopping receiver (SIGTERM: `systemctl stop`, restart, upgrade) lets the pushes and commands in flight " +
			"run; what still runs then is cancelled and undone (`0`: at once)",
		set: durationSetting(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, func(d time.Duration) bool { return d >= 0 },
			"is not a duration such as 10m (0 to cancel at once)")},
	{key: "staging_branches", def: "*", doc: "globs of the branches deployed as staging instances, or `none`", list: true,
		set: func(c *Config, v string) (err error) { c.StagingBranches, err = parseBranchGlobs(v); return err }},
	{key: "staging_idle", def: "0",
		doc: "stop a staging instance's workers after this long without a request (e.g. `30m`); the next request starts them",
		set: durationSetting(func(c *Config) *time.Duration { return &c.StagingIdle }, func(d time.Duration) bool {
			return d == 0 || (d >= time.Second && d <= 7*24*time.Hour)
		},
			"is not a duration from 1s to 168h, such as 30m (0 for never)")},
	{key: "staging_workers", def: "on",
		doc: "`off`: staging instances run no `worker.NAME` or `cron.NAME` (production instances always do)",
		set: func(c *Config, v string) error {
			if v != "on" && v != "off" {
				return errors.New("is neither on nor off")
			}
			c.StagingWorkersOff = v == "off"
			return nil
		}},
	{key: "cron_check", def: "30s",
		doc: "how often the receiver checks that each instance's cron jobs and `nodes = one` workers are on a healthy node, moving them off one that is gone or fails its check",
		set: durationSetting(func(c *Config) *time.Duration { return &c.CronCheck }, func(d time.Duration) bool { return d >= time.Second && d <= time.Hour },
			"is not a duration from 1s to 1h, such as 30s")},
	{key: "default_memory", def: "512M",
		doc: "memory an instance may use on each node when its app.ini has no `memory` (`M` or `G`; a plain number is MB; at least `32M`)",
		set: limitSetting(func(l *appconfig.Limits) *int { return &l.DefaultMemoryMB }, parseMemorySetting)},
	{key: "max_memory", def: "4G",
		doc: "the most an app.ini may ask for with `memory`; a push asking more is refused before anything is provisioned",
		set: limitSetting(func(l *appconfig.Limits) *int { return &l.MaxMemoryMB }, parseMemorySetting)},
	{key: "default_max_processes", def: "128",
		doc: "processes and threads an instance may run at once when its app.ini has no `max_processes` (8 or more)",
		set: limitSetting(func(l *appconfig.Limits) *int { return &l.DefaultMaxProcesses }, parseProcessesSetting)},
	{key: "max_processes", def: "1024", doc: "the most an app.ini may ask for with `max_processes`",
		set: limitSetting(func(l *appconfig.Limits) *int { return &l.MaxProcesses }, parseProcessesSetting)},
	{key: "deploy", def: "true",
		doc: "`false`: a plain git mirror; pushes are authorized, checked and accepted, nothing is built or deployed " +
			"(`-----> APP: deploy is off on this receiver; BRANCH accepted, nothing deployed`)", set: setDeploy},
	{key: "packages_allowed", def: strings.Join(DefaultPackagesAllowed, " "),
		doc: "globs of the Debian packages an app.ini's `packages =` may have installed on the nodes (as root), or `none`; " +
			"a push asking for another is refused naming this setting", list: true,
		set: func(c *Config, v string) (err error) { c.PackagesAllowed, err = parsePackageGlobs(v); return err }},
	{key: "services", def: "all",
		doc: "the services deploys may ask for (`postgis, redis, files`, or `none`): the first deploy naming one installs its " +
			"server on the services node, so which servers run is the operator's decision; a push naming another is refused " +
			"before anything is provisioned (`app.ini: service.mysql: this receiver does not provide mysql (its operator allows: ...)`)",
		list: true,
		set:  func(c *Config, v string) (err error) { c.AllowedServices, err = parseAllowedServices(v); return err }},
	{key: "https", def: "auto",
		doc: "`on`: every host a deploy answers at gets a certificate from the ACME CA once the release is live, renewed by the daemon; " +
			"`auto`: on once `acme_email` is set; `off`: no ACME (`certs:add` still installs an operator's certificate)", set: setHTTPS},
	{key: "acme_email", def: "none", doc: "the contact the CA may write to about expiring certificates (`none`: unset, and HTTPS stays off)",
		set: setACMEEmail},
	{key: "acme_directory", def: certs.DefaultDirectory,
		doc: "the ACME directory URL of the CA (any RFC 8555 CA, e.g. an internal step-ca)", set: setACMEDirectory},
	{key: "acme_ca", def: "none",
		doc: "a PEM file of the root certificates to trust for `acme_directory` (a private CA); `none`: the system's (`SSL_CERT_FILE` moves them)",
		set: setACMECA},
}

// settingKeys are the keys of settingsTable, for "did you mean".
func settingKeys() []string {
	keys := make([]string, len(settingsTable))
	for i, s := range settingsTable {
		keys[i] = s.key
	}
	return keys
}

// durationSetting reads a duration that ok accepts into the field field picks.
func durationSetting(field func(*Config) *time.Duration, ok func(time.Duration) bool, allowed string) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || !ok(d) {
			return errors.New(allowed)
		}
		*field(c) = d
		return nil
	}
}

// limitSetting reads one of the instance resource settings into c.Limits.
func limitSetting(field func(*appconfig.Limits) *int, parse func(string) (int, error)) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parse(v)
		if err != nil {
			return err
		}
		*field(&c.Limits) = n
		return nil
	}
}

func setReleaseSize(c *Config, v string) error {
	n, err := strconv.ParseInt(v, 0, 64) // as ini.v1's Int64 read it
	if err != nil || n <= 0 {
		return errors.New("is not a positive number of bytes")
	}
	c.ReleaseSizeLimit = n
	return nil
}

func setDomain(c *Config, v string) error {
	d := strings.ToLower(strings.TrimSuffix(v, "."))
	if !names.IsHost(d) || len(d) > 200 {
		return errors.New("is not a DNS name such as apps.example.com")
	}
	c.Domain = d
	return nil
}

func setKeepReleases(c *Config, v string) error {
	n, err := strconv.ParseInt(v, 0, 64) // as ini.v1's Int read it
	if err != nil || n < 2 || n > 100 {
		return errors.New("must be a number from 2 to 100 (the live release and the previous one at least)")
	}
	c.KeepReleases = int(n)
	return nil
}

func setDeploy(c *Config, v string) error {
	on, ok := parseOnOff(v)
	if !ok {
		return errors.New("must be true or false (false: accept pushes without building or deploying them)")
	}
	c.DeployOff = !on
	return nil
}

func setHTTPS(c *Config, v string) error {
	switch v {
	case "on", "off", "auto":
		c.HTTPS = v
		return nil
	}
	return errors.New("must be on, off or auto (on once acme_email is set)")
}

func setACMEEmail(c *Config, v string) error {
	if v == "none" {
		c.ACMEEmail = ""
		return nil
	}
	if a, err := mail.ParseAddress(v); err != nil || a.Address != v || a.Name != "" {
		return errors.New("is not an e-mail address such as ops@example.com")
	}
	c.ACMEEmail = v
	return nil
}

func setACMEDirectory(c *Config, v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return errors.New("is not an https:// URL of an ACME directory")
	}
	c.ACMEDirectory = v
	return nil
}

func setACMECA(c *Config, v string) error {
	if v == "none" {
		c.ACMECA = ""
		return nil
	}
	if !filepath.IsAbs(v) {
		return errors.New("is not an absolute path to a PEM file")
	}
	c.ACMECA = v
	return nil
}
