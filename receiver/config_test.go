package receiver

import (
	"os"
	"path/filepath"
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
