//go:build e2e

package main_test

// The pre-receive pipeline end to end: real git pushes of the example app
// and of broken variants of it, each rejected with its message and with the
// branch left where it was.

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// exampleWorkTree copies examples/NAME (symlinks and exec bits kept) into a
// new git work tree with one commit.
func exampleWorkTree(t *testing.T, c *receivertest.Client, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "examples", name)
	dir := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("cp", "-a", src, dir).CombinedOutput(); err != nil {
		t.Fatalf("copying %s: %v\n%s", name, err, out)
	}
	c.MustGit(t, dir, "init", "-q", "-b", "main")
	c.MustGit(t, dir, "add", "-A")
	c.MustGit(t, dir, "commit", "-q", "-m", "example "+name)
	return dir
}

func TestExampleAppIsBuilt(t *testing.T) {
	f := newFixture(t)
	work := exampleWorkTree(t, f.alice, "djangoapp")
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("sampleapp"))
	r := f.alice.MustGit(t, work, "push", "silver", "main")
	head := strings.TrimSpace(f.alice.MustGit(t, work, "rev-parse", "--short=7", "HEAD").Stdout)
	for _, want := range []string{
		"remote: -----> sampleapp: deploying main (" + head + ") by alice",
		"remote: -----> Validating app.ini",
		"remote:        runner = src/sampleapp/wsgi.py, services: files",
		"remote: -----> Fixing .pth paths",
		"remote:        lib/python/sampleapp.pth: /home/alice/sampleapp/src -> ../../src",
		"remote:        lib/python/easy-install.pth: /home/alice/sampleapp/vendor/tinylib -> ../../vendor/tinylib",
		"remote:        lib/python/tinylib.egg-link: /home/alice/sampleapp/vendor/tinylib -> ../../vendor/tinylib",
		"remote: -----> Built release v1: 10 files",
		"remote: -----> Uploading release v1 to 1 node",
		"remote:        local    ready",
		"remote: -----> Switching 1 node to v1",
		"remote: =====> sampleapp v1 (main) is live on 1 node",
	} {
		mustContain(t, r.Stderr, want)
	}
	// With no node added, the receiver host is node "local": the release
	// is on it, verified, and current.
	local := filepath.Join(f.nodeRoot, "sampleapp", "production")
	if target, err := os.Readlink(filepath.Join(local, "current")); err != nil || target != "releases/v1" {
		t.Fatalf("local node: current -> %q, %v", target, err)
	}
	if err := agent.Verify(filepath.Join(local, "releases", "v1"), lastManifest(t, f, "sampleapp")); err != nil {
		t.Fatalf("local node: %v", err)
	}
	// The repository keeps what was pushed; the fix lives in the release.
	clone := filepath.Join(t.TempDir(), "clone")
	f.alice.MustGit(t, "", "clone", "-q", f.alice.URL("sampleapp"), clone)
	pth, _ := os.ReadFile(filepath.Join(clone, "lib/python/sampleapp.pth"))
	mustContain(t, string(pth), "/home/alice/sampleapp/src")

	f.alice.Commit(t, work, "change", map[string]string{"static/style.css": "body { color: red; }\n"})
	r = f.alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, "remote: -----> Built release v2: 10 files")

	// Another branch is its own instance with its own release numbers.
	f.alice.MustGit(t, work, "checkout", "-q", "-b", "feature/login")
	r = f.alice.MustGit(t, work, "push", "silver", "feature/login")
	mustContain(t, r.Stderr, "remote: =====> sampleapp v1 (feature/login) is live on 1 node")

	// Tags are accepted and deploy nothing.
	f.alice.MustGit(t, work, "tag", "v1.0")
	r = f.alice.MustGit(t, work, "push", "silver", "v1.0")
	mustContain(t, r.Stderr, "remote: -----> sampleapp: tag v1.0 accepted; tags deploy nothing")

	hist, err := os.ReadFile(filepath.Join(f.data, "releases", "sampleapp", "production", "history.jsonl"))
	if err != nil || strings.Count(string(hist), "\n") != 2 {
		t.Fatalf("production history: %v\n%s", err, hist)
	}
}

func TestPHPExampleIsBuilt(t *testing.T) {
	f := newFixture(t)
	work := exampleWorkTree(t, f.alice, "phpapp")
	r := f.alice.MustGit(t, work, "push", f.alice.URL("phpapp"), "main")
	mustContain(t, r.Stderr, "runner = index.php, platform = php")
}

// TestBrokenAppsAreRejected pushes a good commit, then each broken variant
// on top of it: every one is refused with its message and main stays put.
func TestBrokenAppsAreRejected(t *testing.T) {
	f := newFixture(t)
	work := exampleWorkTree(t, f.alice, "djangoapp")
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("sampleapp"))
	f.alice.MustGit(t, work, "push", "-q", "silver", "main")
	good := strings.TrimSpace(f.alice.MustGit(t, work, "rev-parse", "HEAD").Stdout)

	ini := "src/sampleapp/silver-app.ini"
	for _, tc := range []struct {
		name   string
		change func(dir string)
		want   string
	}{
		{"missing app.ini", func(dir string) { f.alice.MustGit(t, dir, "rm", "-q", "app.ini") },
			"app.ini is missing at the root of the repository"},
		{"app_name mismatch", func(dir string) { replaceIn(t, dir, ini, "app_name = sampleapp", "app_name = blog") },
			"blog"},
		{"missing runner", func(dir string) { f.alice.MustGit(t, dir, "rm", "-q", "src/sampleapp/wsgi.py") },
			"src/sampleapp/wsgi.py"},
		{"unknown service", func(dir string) { replaceIn(t, dir, ini, "service.files =", "service.mongodb =") },
			"mongodb"},
		{"escaping symlink", func(dir string) { symlink(t, dir, "../../../etc/passwd", "static/passwd") },
			"symlink static/passwd -> ../../../etc/passwd: static/passwd leads outside the app"},
		{"absolute symlink", func(dir string) { symlink(t, dir, "/etc/passwd", "static/passwd") },
			"static/passwd -> /etc/passwd points outside the app"},
		{".pth to nothing", func(dir string) { appendTo(t, dir, "lib/python/sampleapp.pth", "/opt/elsewhere/nothing\n") },
			"lib/python/sampleapp.pth:4: /opt/elsewhere/nothing"},
		{"submodule", func(dir string) {
			sub := filepath.Join(dir, "vendor", "sub")
			f.alice.MustGit(t, "", "init", "-q", sub)
			f.alice.Commit(t, sub, "nested", map[string]string{"x": "x"})
		}, "vendor/sub is a git submodule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.alice.MustGit(t, work, "reset", "-q", "--hard", good)
			tc.change(work)
			f.alice.MustGit(t, work, "add", "-A")
			f.alice.MustGit(t, work, "commit", "-q", "-m", tc.name)
			r := f.alice.Git(t, work, "push", "silver", "main")
			if r.Code == 0 {
				t.Fatalf("push succeeded:\n%s", r.Stderr)
			}
			for _, want := range []string{tc.want, "remote:  !     Push rejected: nothing was changed.", "pre-receive hook declined"} {
				mustContain(t, r.Stderr, want)
			}
			if got := lsRemote(t, f, "refs/heads/main"); got != good {
				t.Fatalf("main moved to %s", got)
			}
		})
	}
	f.alice.MustGit(t, work, "reset", "-q", "--hard", good)

	t.Run("shallow push", func(t *testing.T) {
		// A depth-1 clone of a two-commit history, pushed where the missing
		// parent is unknown: the receiver cannot have the whole history.
		f.alice.Commit(t, work, "second", map[string]string{"static/y.css": "y\n"})
		shallow := filepath.Join(t.TempDir(), "shallow")
		f.alice.MustGit(t, "", "clone", "-q", "--depth", "1", "file://"+work, shallow)
		replaceIn(t, shallow, ini, "app_name = sampleapp", "app_name = fresh")
		f.alice.MustGit(t, shallow, "commit", "-q", "-am", "rename")
		r := f.alice.Git(t, shallow, "push", f.alice.URL("fresh"), "main")
		if r.Code == 0 {
			t.Fatalf("shallow push succeeded:\n%s", r.Stderr)
		}
		mustContain(t, r.Stderr, "shallow update not allowed")
		// The server cleans up after git has told the client.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(f.data, "repos", "fresh.git")); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a rejected first push left an empty repository behind")
			}
		}
		f.alice.MustGit(t, work, "reset", "-q", "--hard", good)
	})

	t.Run("deleting main", func(t *testing.T) {
		r := f.alice.Git(t, work, "push", "silver", ":main")
		if r.Code == 0 {
			t.Fatalf("deleting main succeeded:\n%s", r.Stderr)
		}
		mustContain(t, r.Stderr, "deleting main would take sampleapp's production instance down")
		if got := lsRemote(t, f, "refs/heads/main"); got != good {
			t.Fatalf("main = %q", got)
		}
	})
}

func lsRemote(t *testing.T, f *fixture, ref string) string {
	t.Helper()
	out := f.alice.MustGit(t, "", "ls-remote", f.alice.URL("sampleapp"), ref).Stdout
	sha, _, _ := strings.Cut(out, "\t")
	return sha
}

func replaceIn(t *testing.T, dir, file, old, new string) {
	t.Helper()
	p := filepath.Join(dir, file)
	data, err := os.ReadFile(p)
	if err != nil || !strings.Contains(string(data), old) {
		t.Fatalf("%s lacks %q: %v", file, old, err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t *testing.T, dir, file, text string) {
	t.Helper()
	fh, err := os.OpenFile(filepath.Join(dir, file), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, dir, target, link string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
}
