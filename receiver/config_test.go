package receiver

import (
	"os"
	"path/filepath"
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
		got, err := appFromRepoArg(arg)
		if (want == "") != (err != nil) || got != want {
			t.Errorf("appFromRepoArg(%q) = %q, %v; want %q", arg, got, err, want)
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
	if !filepath.IsAbs(c.DataDir) || filepath.Base(c.DataDir) != "data" || !filepath.IsAbs(c.hookSocket()) {
		t.Fatalf("DataDir = %q, hook socket %q", c.DataDir, c.hookSocket())
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
