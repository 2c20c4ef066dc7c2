//go:build e2e

package main_test

// The receiver's resource settings end to end: a receiver that allows at
// most 1G per instance refuses a push asking for more before anything is
// provisioned or placed, with the line to fix, and the values it accepts
// reach the node agent in the release's spec.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

func TestResourceLimits(t *testing.T) {
	f := newFixture(t)
	settings := "default_memory = 256M\nmax_memory = 1G\ndefault_max_processes = 32\nmax_processes = 64\n"
	if err := os.WriteFile(filepath.Join(f.data, "gitreceive.ini"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	f.srv.Kill()
	f.srv.Restart(t)

	work := f.alice.WorkTree(t, receivertest.App("myapp", nil))
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("myapp"))
	f.alice.MustGit(t, work, "push", "-q", "silver", "main")
	// Nothing in app.ini: the receiver's defaults, and each of the two
	// default workers recycled before they outgrow the memory together.
	checkSpec(t, f, 1, [5]int{256, 32, 100, 2, 128})
	live := serverHead(t, f)

	head := "[production]\napp_name = myapp\nrunner = app.py\n"
	for _, tc := range []struct{ name, keys, want string }{
		{"memory above max_memory", "memory = 2G\n", "app.ini:4: memory: 2G is more than this receiver allows (max_memory = 1G); lower memory or ask the operator to raise max_memory"},
		{"max_processes above the cap", "cpu_weight = 50\nmax_processes = 65\n", "app.ini:5: max_processes: 65 is more than this receiver allows (its max_processes setting = 64)"},
		{"workers outgrowing the default memory", "workers = 4\nreload_on_rss = 128\n", "app.ini:5: reload_on_rss: workers (line 4) x reload_on_rss = 4 x 128 MB = 512 MB, more than the 256M this instance may use"},
		{"workers beyond default_max_processes", "workers = 30\n", "app.ini:4: workers: 30 workers need max_processes = 34 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.alice.Commit(t, work, strings.TrimSpace(tc.keys), map[string]string{"app.ini": head + tc.keys})
			r := f.alice.Git(t, work, "push", "silver", "main")
			if r.Code == 0 {
				t.Fatalf("push accepted:\n%s", r.Stderr)
			}
			mustContain(t, r.Stderr, "remote:  !     "+tc.want)
			mustContain(t, r.Stderr, "Push rejected: nothing was changed.")
			// Refused before anything was provisioned or placed: main,
			// the history and the node are as they were.
			if got := serverHead(t, f); got != live {
				t.Errorf("main moved to %s", got)
			}
			if _, err := os.Stat(filepath.Join(f.data, "releases", "myapp", "production", "v2.spec.json")); !os.IsNotExist(err) {
				t.Errorf("v2 was recorded: %v", err)
			}
			if _, err := os.Stat(filepath.Join(f.nodeRoot, "myapp", "production", "releases", "v2")); !os.IsNotExist(err) {
				t.Errorf("v2 was placed on the node: %v", err)
			}
			if target, err := os.Readlink(filepath.Join(f.nodeRoot, "myapp", "production", "current")); err != nil || target != "releases/v1" {
				t.Errorf("current -> %q, %v", target, err)
			}
			f.alice.MustGit(t, work, "reset", "-q", "--hard", "HEAD^")
		})
	}

	keys := "memory = 1G\nmax_processes = 64\ncpu_weight = 300\nworkers = 4\n"
	f.alice.Commit(t, work, "within the caps", map[string]string{"app.ini": head + keys})
	f.alice.MustGit(t, work, "push", "-q", "silver", "main")
	checkSpec(t, f, 2, [5]int{1024, 64, 300, 4, 256})

	// A cap lowered after a deploy holds for config:set too, which makes a
	// new release from the same app.ini.
	if err := os.WriteFile(filepath.Join(f.data, "gitreceive.ini"), []byte("default_memory = 256M\nmax_memory = 512M\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.srv.Kill()
	f.srv.Restart(t)
	r := f.alice.SSH(t, "", nil, "config:set", "myapp", "GREETING=hi")
	if r.Code == 0 || !strings.Contains(r.Stderr, "app.ini:4: memory: 1G is more than this receiver allows (max_memory = 512M)") {
		t.Fatalf("config:set above a lowered cap: %s", r)
	}
	if _, err := os.Stat(filepath.Join(f.data, "releases", "myapp", "production", "v3.spec.json")); !os.IsNotExist(err) {
		t.Errorf("config:set recorded v3: %v", err)
	}

	// A receiver whose settings contradict each other does not start.
	if err := os.WriteFile(filepath.Join(f.data, "gitreceive.ini"), []byte("max_memory = 128M\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a server that starts is stopped
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:0", "--data", f.data).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "default_memory = 512M (the default) is more than max_memory = 128M") {
		t.Fatalf("serve with default_memory above max_memory: %v\n%s", err, out)
	}
}

// checkSpec reads the spec release n of myapp went live with and compares
// memory_mb, max_processes, cpu_weight, workers and reload_on_rss.
func checkSpec(t *testing.T, f *fixture, n int, want [5]int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.data, "releases", "myapp", "production", fmt.Sprintf("v%d.spec.json", n)))
	if err != nil {
		t.Fatal(err)
	}
	var spec agent.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	if got := [5]int{spec.MemoryMB, spec.MaxProcesses, spec.CPUWeight, spec.Workers, spec.ReloadOnRSS}; got != want {
		t.Errorf("v%d: memory_mb, max_processes, cpu_weight, workers, reload_on_rss = %v, want %v", n, got, want)
	}
}

// serverHead is where main is in the receiver's repository.
func serverHead(t *testing.T, f *fixture) string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", filepath.Join(f.data, "repos", "myapp.git"), "rev-parse", "refs/heads/main").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
