package apps

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GITRECEIVE_LISTEN", "")
	c, err := LoadConfig(dir, "")
	if err != nil || c.Listen != DefaultListen || c.LockTimeout != DefaultLockTimeout {
		t.Fatalf("defaults: %+v, %v", c, err)
	}

	if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte("listen = 127.0.0.1:3000\nlock_timeout = 2m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ = LoadConfig(dir, "")
	if c.Listen != "127.0.0.1:3000" || c.LockTimeout != 2*time.Minute {
		t.Fatalf("ini: %+v", c)
	}
	t.Setenv("GITRECEIVE_LISTEN", "127.0.0.1:4000")
	if c, _ = LoadConfig(dir, ""); c.Listen != "127.0.0.1:4000" {
		t.Fatalf("env: %+v", c)
	}
	if c, _ = LoadConfig(dir, "127.0.0.1:5000"); c.Listen != "127.0.0.1:5000" {
		t.Fatalf("flag: %+v", c)
	}

	if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte("lock_timeout = soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(dir, ""); err == nil || !strings.Contains(err.Error(), "lock_timeout") {
		t.Fatalf("bad lock_timeout: %v", err)
	}
}

func TestLoadConfigDomainAndKeep(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadConfig(dir, "")
	if err != nil || c.Domain != DefaultDomain || c.KeepReleases != DefaultKeepReleases {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	for _, tc := range []struct{ ini, want string }{
		{"domain = Apps.Example.COM.\nkeep_releases = 3\n", ""},
		{"domain = apps_example.com\n", "domain"},
		{"domain = a b\n", "domain"},
		{"keep_releases = 1\n", "keep_releases"},
		{"keep_releases = many\n", "keep_releases"},
	} {
		if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(tc.ini), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(dir, "")
		switch {
		case tc.want == "" && (err != nil || c.Domain != "apps.example.com" || c.KeepReleases != 3):
			t.Errorf("%q: %+v, %v", tc.ini, c, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one about %s", tc.ini, err, tc.want)
		}
	}
}

func TestLoadConfigStaging(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		ini      string
		branches []string
		idle     time.Duration
		err      string
	}{
		{"", nil, 0, ""},
		{"staging_branches = staging, feature-*\nstaging_idle = 30m\n", []string{"staging", "feature-*"}, 30 * time.Minute, ""},
		{"staging_branches = none\nstaging_idle = 0\n", []string{}, 0, ""},
		{"staging_branches = $(x)\n", nil, 0, "staging_branches"},
		{"staging_idle = 1ms\n", nil, 0, "staging_idle"},
		{"staging_idle = soon\n", nil, 0, "staging_idle"},
	} {
		if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(tc.ini), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(dir, "")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one about %s", tc.ini, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(c.StagingBranches, tc.branches) || (c.StagingBranches == nil) != (tc.branches == nil) || c.StagingIdle != tc.idle {
			t.Errorf("%q: %v %v, %v", tc.ini, c.StagingBranches, c.StagingIdle, err)
		}
	}
}

func TestResolveDataDir(t *testing.T) {
	t.Setenv("GITRECEIVE_DATA", "")
	if got := ResolveDataDir(""); got != DefaultDataDir {
		t.Fatalf("default %q", got)
	}
	t.Setenv("GITRECEIVE_DATA", "/env")
	if got := ResolveDataDir(""); got != "/env" {
		t.Fatalf("env %q", got)
	}
	if got := ResolveDataDir("/flag"); got != "/flag" {
		t.Fatalf("flag %q", got)
	}
}

func TestAppFromRepoArg(t *testing.T) {
	for arg, want := range map[string]string{
		"myapp": "myapp", "/myapp": "myapp", "/myapp.git": "myapp", "~/myapp": "myapp", "myapp.git": "myapp", "a-1": "a-1",
		"../x": "", "a;b": "", "A": "", "": "", "/": "", "x/y": "", "/~/x": "", ".git": "", strings.Repeat("a", 64): "",
	} {
		got, err := AppFromRepoArg(arg)
		if (want == "") != (err != nil) || got != want {
			t.Errorf("AppFromRepoArg(%q) = %q, %v; want %q", arg, got, err, want)
		}
	}
}

// A relative data dir is made absolute: the hook socket's path and git's
// HOME are used by processes running in a repository's directory.
func TestLoadConfigMakesDataDirAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	c, err := LoadConfig("data", "")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(c.DataDir) || filepath.Base(c.DataDir) != "data" || !filepath.IsAbs(c.HookSocket()) {
		t.Fatalf("DataDir = %q, hook socket %q", c.DataDir, c.HookSocket())
	}
}

func TestLoadConfigDeploy(t *testing.T) {
	dir := t.TempDir()
	if c, err := LoadConfig(dir, ""); err != nil || c.DeployOff {
		t.Fatalf("default: %+v, %v (deploy must default to on)", c, err)
	}
	if c := (Config{}); c.DeployOff {
		t.Fatal("a Config built in code must deploy")
	}
	for _, tc := range []struct {
		ini     string
		off     bool
		wantErr bool
	}{
		{"deploy = false\n", true, false},
		{"deploy = FALSE\n", true, false},
		{"deploy = no\n", true, false},
		{"deploy = off\n", true, false},
		{"deploy = 0\n", true, false},
		{"deploy = true\n", false, false},
		{"deploy = Yes\n", false, false},
		{"deploy = on\n", false, false},
		{"deploy = 1\n", false, false},
		{"deploy =\n", false, false}, // empty: the default
		{"deploy = nope\n", false, true},
		{"deploy = f\n", false, true},
		{"deploy = false # a git mirror\n", true, false}, // ini comments are stripped
		{"deploy = 2\n", false, true},
	} {
		path := filepath.Join(dir, ConfigFileName)
		if err := os.WriteFile(path, []byte(tc.ini), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(dir, "")
		switch {
		case tc.wantErr && (err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "deploy =")):
			t.Errorf("%q: error %v, want one naming %s and deploy", tc.ini, err, path)
		case !tc.wantErr && (err != nil || c.DeployOff != tc.off):
			t.Errorf("%q: DeployOff = %v, %v; want %v", tc.ini, c.DeployOff, err, tc.off)
		}
	}
}

// Every setting can be given in the environment as GITRECEIVE_KEY, which
// wins over the file; a bad value there is refused naming the variable.
func TestLoadConfigEnvironment(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ConfigFileName)
	for _, tc := range []struct {
		key, file, env string
		got            func(Config) any
		want           any
		bad            string // a value the environment may not give
	}{
		{"listen", "127.0.0.1:1", "127.0.0.1:2", func(c Config) any { return c.Listen }, "127.0.0.1:2", ""},
		{"lock_timeout", "1m", "3m", func(c Config) any { return c.LockTimeout }, 3 * time.Minute, "soon"},
		{"max_release_size", "100", "200", func(c Config) any { return c.ReleaseSizeLimit }, int64(200), "-1"},
		{"domain", "a.example", "B.example.", func(c Config) any { return c.Domain }, "b.example", "a_b"},
		{"keep_releases", "3", "7", func(c Config) any { return c.KeepReleases }, 7, "1"},
		{"run_timeout", "1m", "0", func(c Config) any { return c.RunTimeout }, time.Duration(0), "-1s"},
		{"shutdown_timeout", "1m", "30s", func(c Config) any { return c.ShutdownTimeout }, 30 * time.Second, "-1m"},
		{"staging_branches", "a", "none", func(c Config) any { return len(c.StagingBranches) }, 0, "$(x)"},
		{"staging_idle", "1m", "2h", func(c Config) any { return c.StagingIdle }, 2 * time.Hour, "1ms"},
		{"staging_workers", "on", "off", func(c Config) any { return c.StagingWorkersOff }, true, "maybe"},
		{"cron_check", "1m", "2s", func(c Config) any { return c.CronCheck }, 2 * time.Second, "0s"},
		{"default_memory", "256M", "1G", func(c Config) any { return c.Limits.DefaultMemoryMB }, 1024, "16M"},
		{"max_memory", "8G", "2G", func(c Config) any { return c.Limits.MaxMemoryMB }, 2048, "lots"},
		{"default_max_processes", "100", "64", func(c Config) any { return c.Limits.DefaultMaxProcesses }, 64, "4"},
		{"max_processes", "2000", "512", func(c Config) any { return c.Limits.MaxProcesses }, 512, "all"},
		{"deploy", "true", "off", func(c Config) any { return c.DeployOff }, true, "maybe"},
		{"packages_allowed", "php-*", "python3-yaml", func(c Config) any { return strings.Join(c.PackagesAllowed, " ") }, "python3-yaml", "$(id)"},
		{"services", "redis", "files postgis", func(c Config) any { return strings.Join(c.AllowedServices, " ") }, "files postgis", "mongodb"},
		{"https", "auto", "off", func(c Config) any { return c.HTTPS }, "off", "yes"},
		{"acme_email", "a@example.com", "ops@example.com", func(c Config) any { return c.ACMEEmail }, "ops@example.com", "ops at example"},
		{"acme_directory", "https://a.example/dir", "https://ca.example/acme/directory", func(c Config) any { return c.ACMEDirectory }, "https://ca.example/acme/directory", "http://ca.example/dir"},
		{"acme_ca", "/etc/a.pem", "/etc/ssl/private-ca.pem", func(c Config) any { return c.ACMECA }, "/etc/ssl/private-ca.pem", "roots.pem"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			env := "GITRECEIVE_" + strings.ToUpper(tc.key)
			if err := os.WriteFile(path, []byte(tc.key+" = "+tc.file+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv(env, tc.env)
			c, err := LoadConfig(dir, "")
			if err != nil || tc.got(c) != tc.want {
				t.Fatalf("%s=%s over %s = %s: %v, %v; want %v", env, tc.env, tc.key, tc.file, tc.got(c), err, tc.want)
			}
			if tc.bad == "" {
				return
			}
			t.Setenv(env, tc.bad)
			_, err = LoadConfig(dir, "")
			if err == nil || !strings.Contains(err.Error(), "environment "+env+": "+tc.key) {
				t.Fatalf("%s=%s: error %v, want one naming the variable and %s", env, tc.bad, err, tc.key)
			}
		})
	}
	if len(settingsTable) != 22 {
		t.Errorf("the table has %d settings, this test covers 22: add the new one above", len(settingsTable))
	}
}

// The cross-check of a default against its cap names where each was set.
func TestLoadConfigLimitsFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ConfigFileName)
	if err := os.WriteFile(path, []byte("# limits\ndefault_memory = 1G\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GITRECEIVE_MAX_MEMORY", "512M")
	_, err := LoadConfig(dir, "")
	want := "environment GITRECEIVE_MAX_MEMORY: default_memory = 1G (" + path + ": line 2) is more than max_memory = 512M; lower default_memory or raise max_memory"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}

// A bad value is refused naming the file, the line, the key and what is allowed.
func TestLoadConfigErrorNamesTheLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ConfigFileName)
	for _, tc := range []struct{ ini, want string }{
		{"listen = :22\n\nlock_timeout = soon\n", path + `: line 3: lock_timeout = "soon" is not a positive duration such as 10m`},
		{"; old\nkeep_releases = 9\nkeep_releases = 1\n", path + `: line 3: keep_releases = "1" must be a number from 2 to 100`},
		{"services = redis\n  staging_branches: $(x)\n", path + `: line 2: staging_branches: "$(x)" is not a branch name or glob`},
		{"max_processes = 64\n", path + ": line 1: default_max_processes = 128 (the default) is more than max_processes = 64"},
	} {
		if err := os.WriteFile(path, []byte(tc.ini), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(dir, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.ini, err, tc.want)
		}
	}
}

// What the file sets but nothing reads is a warning naming the file, the
// line and the key, with the key likely meant.
func TestLoadConfigWarnings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ConfigFileName)
	for _, tc := range []struct {
		ini  string
		want []string // each warning, after "PATH: line "
	}{
		{"listen = :2222\nmax_memory = 8G\n", nil},
		{"\ufeffdeploy = false\n", nil},
		{"listen = :2222\nmax_memroy = 8G\n", []string{"2: unknown setting max_memroy is ignored; did you mean max_memory?"}},
		{"Max_Memory = 8G\n", []string{"1: unknown setting Max_Memory is ignored; did you mean max_memory?"}},
		{"keep-releases = 3\n", []string{"1: unknown setting keep-releases is ignored; did you mean keep_releases?"}},
		{"colour = blue\n", []string{"1: unknown setting colour is ignored; the settings are listen, lock_timeout, "}},
		{"domain = a.example\n# again\ndomain = b.example\n", []string{"3: domain is set again (first on line 1); the last value counts"}},
		{"deploy = true\n\n[receiver]\nlisten = :1\ndomain = x.example\n", []string{"3: section [receiver] and the 2 settings in it are ignored"}},
		{"[DEFAULT]\nlistne = :1\n", []string{"2: unknown setting listne is ignored; did you mean listen?"}},
	} {
		if err := os.WriteFile(path, []byte(tc.ini), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(dir, "")
		if err != nil || len(c.Warnings) != len(tc.want) {
			t.Errorf("%q: warnings %q, %v; want %d", tc.ini, c.Warnings, err, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.HasPrefix(c.Warnings[i], path+": line "+w) {
				t.Errorf("%q: warning %q, want %q", tc.ini, c.Warnings[i], path+": line "+w)
			}
		}
	}
}

// Each setting's default as README writes it is the default LoadConfig
// applies.
func TestSettingsTableDefaults(t *testing.T) {
	want := defaultConfig("/data")
	for _, s := range settingsTable {
		c := defaultConfig("/data")
		if err := s.set(&c, s.def); err != nil {
			t.Errorf("%s: default %q: %v", s.key, s.def, err)
			continue
		}
		// nil is how the Config says "the default" for these lists.
		if slices.Equal(c.StagingBranches, []string{"*"}) {
			c.StagingBranches = nil
		}
		if slices.Equal(c.PackagesAllowed, DefaultPackagesAllowed) {
			c.PackagesAllowed = nil
		}
		if !reflect.DeepEqual(c, want) {
			t.Errorf("%s = %s gives %+v, not the default %+v", s.key, s.def, c, want)
		}
	}
}

// README's settings table is the table's keys, defaults and docs.
func TestREADMEListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	table.WriteString("| key | default | what it does |\n|---|---|---|\n")
	for _, s := range settingsTable {
		fmt.Fprintf(&table, "| `%s` | `%s` | %s |\n", s.key, s.def, s.doc)
	}
	if !strings.Contains(string(readme), table.String()) {
		t.Errorf("README.md's settings table differs from settingsTable; it should read:\n%s", table.String())
	}
	if !strings.Contains(string(readme), "`GITRECEIVE_` and the key in capitals") {
		t.Error("README.md does not say how to set a setting in the environment")
	}
}

// gitreceive.ini is the operator's, but read by the daemon as root: no
// text may crash it, and its warnings and errors name the file.
func FuzzSettingsFile(f *testing.F) {
	for _, seed := range []string{
		"", "listen = :2222\n", "[x]\na = b\n", "max_memroy = 8G\nmax_memory = 1G\nmax_memory=2G\n",
		"deploy = \"false\" ; off\n", "domain = `a\nb`\n", "k = \"\"\"\nv\n\"\"\"\n", "a = b \\\n c\n", "\ufeff[DEFAULT]\n:=\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := parseSettingsFile("/data/gitreceive.ini", data)
		if err != nil {
			return
		}
		for _, w := range file.warnings {
			if !strings.HasPrefix(w, "/data/gitreceive.ini: ") || strings.Contains(w, ": line 0") {
				t.Fatalf("warning %q does not name the file", w)
			}
		}
		c := defaultConfig("/data")
		if err := applySettings(&c, file.values); err != nil && !strings.HasPrefix(err.Error(), "/data/gitreceive.ini: ") {
			t.Fatalf("error %q does not name the file and line", err)
		}
	})
}
