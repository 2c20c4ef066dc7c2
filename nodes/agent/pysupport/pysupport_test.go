package pysupport

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func requirePython(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is not installed (CI=true, so not skipping)")
		}
		t.Skip("python3 is not installed")
	}
	return p
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInstallWritesOnlyWhatChanged(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "python")
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "silversupport", "secret.py")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(file, old, old); err != nil {
		t.Fatal(err)
	}
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(file); err != nil || !info.ModTime().Equal(old) || info.Mode().Perm() != 0o644 {
		t.Errorf("an unchanged file was rewritten or has the wrong mode: %v %v", info.ModTime(), err)
	}
	if err := os.WriteFile(file, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(file); !strings.Contains(string(data), "def get_secret") {
		t.Error("a changed file was not put back")
	}

	link := filepath.Join(t.TempDir(), "python")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if err := Install(link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Install through a symlink: %v", err)
	}
}

// TestEveryPythonProcessSeesTheApp runs python3 as `run` and update_fetch
// do, through another program (env), with a subprocess of its own: each
// sees lib/python's .pth entries, silvercustomize's settings and
// silversupport.
func TestEveryPythonProcessSeesTheApp(t *testing.T) {
	python := requirePython(t)
	support := filepath.Join(t.TempDir(), "python")
	if err := Install(support); err != nil {
		t.Fatal(err)
	}
	// A second sitecustomize after ours stands for the system's own.
	system := t.TempDir()
	writeFiles(t, system, map[string]string{"sitecustomize.py": "import os\nos.environ['SYSTEM_SITECUSTOMIZE'] = 'ran'\n"})
	release := t.TempDir()
	writeFiles(t, release, map[string]string{
		"lib/python/sampleapp.pth":      "../../src\n",
		"lib/python/silvercustomize.py": "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'sampleapp.settings')\n",
		"src/sampleapp/__init__.py":     "NAME = 'sampleapp'\n",
		"bin/check.py": `import os, subprocess, sys
import sampleapp
from silversupport.secret import get_secret, get_key
from silversupport.env import is_production
print(sampleapp.NAME, os.environ['DJANGO_SETTINGS_MODULE'], get_secret(), get_key('api.token'), is_production(), os.environ.get('SYSTEM_SITECUSTOMIZE'), os.environ.get('K'))
lib = os.path.join(os.environ['SILVER_APP_DIR'], 'lib', 'python')
dist = [i for i, p in enumerate(sys.path) if 'dist-packages' in p or 'site-packages' in p and not p.startswith(os.environ['SILVER_APP_DIR'])]
print('lib/python first' if not dist or sys.path.index(lib) < min(dist) else 'system first: %r' % sys.path)
sys.stdout.flush()
subprocess.run([sys.executable, '-c', 'import sampleapp, os; print("child", sampleapp.NAME, os.environ["DJANGO_SETTINGS_MODULE"])'], check=True)
`,
	})
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("0123abcd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("env", "K=V", python, "bin/check.py")
	cmd.Dir = release
	cmd.Env = []string{
		"PATH=/usr/bin:/bin",
		"PYTHONPATH=" + support + ":" + system,
		AppDirEnv + "=" + release,
		"SILVER_SECRET_FILE=" + secret,
		"SILVER_VERSION=gitreceive/test",
		"CONFIG_API_TOKEN=t0k",
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "sampleapp sampleapp.settings 0123abcd t0k True ran V\nlib/python first\nchild sampleapp sampleapp.settings\n"
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

func TestWithoutAnAppNothingChanges(t *testing.T) {
	python := requirePython(t)
	support := filepath.Join(t.TempDir(), "python")
	if err := Install(support); err != nil {
		t.Fatal(err)
	}
	for _, appDir := range []string{"", "/nonexistent"} {
		cmd := exec.Command(python, "-c", "import silversupport.env as e; print(e.is_production())")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONPATH=" + support, AppDirEnv + "=" + appDir}
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "False\n" {
			t.Errorf("SILVER_APP_DIR=%q: %v %s", appDir, err, out)
		}
	}
	cmd := exec.Command(python, "-c", "from silversupport.secret import get_secret; get_secret()")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONPATH=" + support}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "SILVER_SECRET_FILE is not set") {
		t.Errorf("get_secret without a secret: %v %s", err, out)
	}
}
