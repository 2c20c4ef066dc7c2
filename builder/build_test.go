package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/hooks"
)

// gitRepo commits files (content "->x" makes a symlink, a "bin/" path an
// executable) into a new repository and returns it with the commit id.
func gitRepo(t *testing.T, files map[string]string) (Git, string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git is not installed")
		}
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "-q", "-b", "main")
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(p, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	run("add", "-A")
	run("commit", "-q", "-m", "x")
	return Git{Dir: filepath.Join(dir, ".git")}, run("rev-parse", "HEAD")
}

func sampleApp() map[string]string {
	return map[string]string{
		"app.ini":                   "->src/sample/silver-app.ini",
		"src/sample/silver-app.ini": "[production]\napp_name = sample\nrunner = src/sample/wsgi.py\nservice.postgis =\n",
		"src/sample/wsgi.py":        "def application(e, s): pass\n",
		"lib/python/sample.pth":     "# dev\n/home/alice/sample/src/sample\nimport os\n",
		"bin/manage.py":             "#!/usr/bin/env python3\n",
		"static/big.css":            strings.Repeat("x", 100000),
	}
}

func TestBuildRelease(t *testing.T) {
	files := sampleApp()
	g, commit := gitRepo(t, files)
	var out bytes.Buffer
	r, err := Build(context.Background(), Input{Git: g, App: "sample", Instance: "production", Branch: "main", Commit: commit, Pusher: "alice", Number: 1}, hooks.NewProgress(&out))
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"-----> Validating app.ini\n       runner = src/sample/wsgi.py, services: postgis\n",
		"-----> Fixing .pth paths\n       lib/python/sample.pth: /home/alice/sample/src/sample -> ../../src/sample\n",
		"-----> Built release v1: 6 files",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if r.Config.AppName != "sample" || len(r.Config.Services) != 1 {
		t.Errorf("config %+v", r.Config)
	}
	wantFixed := "# dev\n../../src/sample\nimport os\n"
	if string(r.Fixed["lib/python/sample.pth"]) != wantFixed {
		t.Errorf("fixed .pth = %q", r.Fixed["lib/python/sample.pth"])
	}
	modes := map[string]string{}
	for _, e := range r.Manifest {
		modes[e.Path] = e.Mode
	}
	if modes["app.ini"] != ModeSymlink || modes["bin/manage.py"] != ModeExec || modes["static/big.css"] != ModeFile {
		t.Errorf("modes %v", modes)
	}

	// Every streamed file matches its manifest entry, byte for byte.
	streamed := 0
	err = r.EachFile(context.Background(), nil, func(e ManifestEntry, content io.Reader) error {
		data, err := io.ReadAll(content)
		if err != nil {
			return err
		}
		if e.Mode == ModeSymlink {
			data = []byte(e.Target)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != e.SHA256 || int64(len(data)) != e.Size {
			t.Errorf("%s: streamed content does not match the manifest", e.Path)
		}
		if want := files[e.Path]; e.Blob != "" && e.Mode != ModeSymlink && string(data) != want {
			t.Errorf("%s: content %q", e.Path, data)
		}
		streamed++
		return nil
	})
	if err != nil || streamed != 6 {
		t.Fatalf("EachFile: %v, %d files", err, streamed)
	}

	// A rebuild reusing the manifest hashes nothing again and agrees.
	again, err := Build(context.Background(), Input{Git: g, App: "sample", Commit: commit, Number: 2, Previous: r.Manifest}, hooks.NewProgress(io.Discard))
	if err != nil || again.ManifestHash != r.ManifestHash {
		t.Fatalf("rebuild: %v, hash %s vs %s", err, again.ManifestHash, r.ManifestHash)
	}
}

func TestBuildRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(map[string]string)
		limit  int64
		want   string
	}{
		{"too large", func(map[string]string) {}, 1000, "more than the release size limit"},
		{"app.ini to nowhere", func(f map[string]string) { f["app.ini"] = "->missing.ini" }, 0, "app.ini is a symlink to missing.ini"},
		{"no app.ini", func(f map[string]string) { delete(f, "app.ini") }, 0, "app.ini is missing"},
		{"symlink loop", func(f map[string]string) { f["a"] = "->b"; f["b"] = "->a" }, 0, "loop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := sampleApp()
			tc.change(files)
			g, commit := gitRepo(t, files)
			_, err := Build(context.Background(), Input{Git: g, App: "sample", Commit: commit, Number: 1, SizeLimit: tc.limit}, hooks.NewProgress(io.Discard))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error with %q, got %v", tc.want, err)
			}
		})
	}
}

func TestBuildNamesEveryBadSymlink(t *testing.T) {
	files := sampleApp()
	for i := range 24 {
		files[fmt.Sprintf("wp/link%02d", i)] = fmt.Sprintf("->/usr/share/wordpress/file%02d", i)
	}
	files["wp/up"] = "->../../x"
	g, commit := gitRepo(t, files)
	_, err := Build(context.Background(), Input{Git: g, App: "sample", Commit: commit, Number: 1}, hooks.NewProgress(io.Discard))
	if err == nil {
		t.Fatal("a push with 25 bad symlinks was accepted")
	}
	msg := err.Error()
	for _, want := range []string{"25 symlinks cannot be deployed", "wp/link00 -> /usr/share/wordpress/file00", "wp/link19 ->", "... and 5 more", "cp -rL", "ln -sr"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the rejection lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "wp/link20") || strings.Count(msg, "\n") != 22 {
		t.Errorf("the rejection should name 20 links, then a count:\n%s", msg)
	}
}

func TestBuildReadsProcfile(t *testing.T) {
	files := sampleApp()
	files["Procfile"] = "web: ignored\nworker: bin/manage.py qcluster\nrelease: bin/manage.py migrate --noinput\n"
	files["src/sample/silver-app.ini"] += "cron.clean = 0 3 * * * bin/manage.py clearsessions\n"
	g, commit := gitRepo(t, files)
	var out bytes.Buffer
	r, err := Build(context.Background(), Input{Git: g, App: "sample", Commit: commit, Number: 1}, hooks.NewProgress(&out))
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.Config
	if len(cfg.BackgroundWorkers) != 1 || cfg.BackgroundWorkers[0].Name != "worker" || cfg.BackgroundWorkers[0].From != "Procfile:2" {
		t.Errorf("workers %+v", cfg.BackgroundWorkers)
	}
	if len(cfg.CronJobs) != 1 || cfg.CronJobs[0].Schedule != "0 3 * * *" {
		t.Errorf("cron jobs %+v", cfg.CronJobs)
	}
	if len(cfg.UpdateFetch) != 1 || cfg.UpdateFetch[0].Script != "bin/manage.py" {
		t.Errorf("update_fetch %+v", cfg.UpdateFetch)
	}
	if !strings.Contains(out.String(), "Procfile:1: web is served from app.ini's runner") || !strings.Contains(out.String(), "worker worker, cron clean (0 3 * * *)") {
		t.Errorf("output:\n%s", out.String())
	}

	files["Procfile"] = "worker: celery -A x\n"
	g, commit = gitRepo(t, files)
	_, err = Build(context.Background(), Input{Git: g, App: "sample", Commit: commit, Number: 1}, hooks.NewProgress(io.Discard))
	if err == nil || !strings.Contains(err.Error(), "Procfile:1") || !strings.Contains(err.Error(), "celery") {
		t.Errorf("a Procfile command outside the release: %v", err)
	}
}
