//go:build e2e

package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gitreceive serve logs what gitreceive.ini sets that nothing reads, with
// the line and the key likely meant, before an error the typo may explain;
// the environment overrides the file.
func TestServeSettingsWarningsAndEnvironment(t *testing.T) {
	data := t.TempDir()
	path := filepath.Join(data, "gitreceive.ini")
	if err := os.WriteFile(path, []byte("# limits\nmax_memroy = 8G\nmax_memory = 128M\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a server that starts is stopped
	defer cancel()
	serve := exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:0", "--data", data)
	out, err := serve.CombinedOutput()
	for _, want := range []string{
		path + ": line 2: unknown setting max_memroy is ignored; did you mean max_memory?",
		path + ": line 3: default_memory = 512M (the default) is more than max_memory = 128M",
	} {
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("serve: %v, output lacks %q:\n%s", err, want, out)
		}
	}

	// A bad value in the environment is refused naming the variable.
	serve = exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:0", "--data", data)
	serve.Env = append(os.Environ(), "GITRECEIVE_DEFAULT_MEMORY=lots")
	out, err = serve.CombinedOutput()
	if want := `environment GITRECEIVE_DEFAULT_MEMORY: default_memory = \"lots\" is not a size`; err == nil || !strings.Contains(string(out), want) {
		t.Errorf("serve with GITRECEIVE_DEFAULT_MEMORY=lots: %v, output lacks %q:\n%s", err, want, out)
	}
}
