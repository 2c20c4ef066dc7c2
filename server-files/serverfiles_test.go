package serverfiles_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	serverfiles "github.com/gitreceive/gitreceive/server-files"
)

// The files every node needs; the tree may hold more.
var wantFiles = []string{
	"etc/nginx/conf.d/gitreceive.conf",
	"etc/gitreceive/emperor.ini",
	"etc/systemd/system/gitreceive-emperor.service",
	"usr/share/gitreceive/pages/404.html",
	"usr/share/gitreceive/pages/503.html",
	"etc/logrotate.d/gitreceive",
	"etc/tmpfiles.d/gitreceive.conf",
}

// tree returns every path under dir (slash-separated, relative) with its
// mode, and the contents of the regular files.
func tree(t *testing.T, dir string) (map[string]fs.FileMode, map[string][]byte) {
	t.Helper()
	modes := map[string]fs.FileMode{}
	contents := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		modes[filepath.ToSlash(rel)] = info.Mode()
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			contents[filepath.ToSlash(rel)] = data
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return modes, contents
}

// checkExtracted compares an extracted directory with the sources in this
// package's directory (the test's working directory), modes included.
func checkExtracted(t *testing.T, dir string) {
	t.Helper()
	gotModes, gotData := tree(t, dir)
	srcModes, srcData := tree(t, serverfiles.RootName)
	script, err := os.ReadFile(serverfiles.ScriptName)
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]fs.FileMode{serverfiles.ScriptName: 0o755, serverfiles.RootName: fs.ModeDir | 0o755}
	for rel, mode := range srcModes {
		if mode.IsDir() {
			want[serverfiles.RootName+"/"+rel] = fs.ModeDir | 0o755
		} else {
			want[serverfiles.RootName+"/"+rel] = 0o644
		}
	}
	for rel, mode := range want {
		if got, ok := gotModes[rel]; !ok {
			t.Errorf("%s missing from the extracted tree", rel)
		} else if got != mode {
			t.Errorf("%s: mode %v, want %v", rel, got, mode)
		}
	}
	for rel := range gotModes {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s extracted but not in the sources", rel)
		}
	}
	for rel, data := range srcData {
		if !bytes.Equal(gotData[serverfiles.RootName+"/"+rel], data) {
			t.Errorf("%s: extracted content differs from the source", rel)
		}
	}
	if !bytes.Equal(gotData[serverfiles.ScriptName], script) {
		t.Errorf("%s: extracted content differs from the source", serverfiles.ScriptName)
	}
}

func TestExtract(t *testing.T) {
	// Modes must not depend on the caller's umask.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)

	parent := t.TempDir()
	dir := filepath.Join(parent, "setup")
	if err := serverfiles.Extract(dir); err != nil {
		t.Fatal(err)
	}
	checkExtracted(t, dir)
	for _, rel := range wantFiles {
		if _, err := os.Stat(filepath.Join(dir, serverfiles.RootName, rel)); err != nil {
			t.Errorf("embedded tree lacks %s: %v", rel, err)
		}
	}

	// A rerun replaces the tree: stray files go, edited files come back.
	stray := filepath.Join(dir, serverfiles.RootName, "etc", "stray.conf")
	edited := filepath.Join(dir, serverfiles.RootName, wantFiles[0])
	if err := os.WriteFile(stray, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edited, []byte("edited"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, serverfiles.ScriptName), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := serverfiles.Extract(dir); err != nil {
		t.Fatal(err)
	}
	checkExtracted(t, dir)

	// No temporary siblings left behind.
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "setup" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("parent holds %q, want only setup", names)
	}
}

func TestExtractOverFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "setup")
	if err := os.WriteFile(dir, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := serverfiles.Extract(dir); err != nil {
		t.Fatal(err)
	}
	checkExtracted(t, dir)
}

func TestExtractErrorNamesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing-parent", "setup")
	err := serverfiles.Extract(dir)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Extract into a missing parent: %v, want an error naming %s", err, dir)
	}
}

// The script installs exactly Stack.
func TestStackMatchesScript(t *testing.T) {
	script, err := os.ReadFile(serverfiles.ScriptName)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^STACK=\(([^)]*)\)$`).FindSubmatch(script)
	if m == nil {
		t.Fatalf("%s has no STACK=(...) line", serverfiles.ScriptName)
	}
	if got := strings.Fields(string(m[1])); !slices.Equal(got, serverfiles.Stack) {
		t.Errorf("script's STACK = %q, serverfiles.Stack = %q", got, serverfiles.Stack)
	}
}

// The exported paths are the ones the script and serverroot/ use.
func TestPathsMatchFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "setup")
	if err := serverfiles.Extract(dir); err != nil {
		t.Fatal(err)
	}
	_, contents := tree(t, dir)
	var all strings.Builder
	for _, data := range contents {
		all.Write(data)
	}
	for _, p := range []string{
		serverfiles.AppsDir, serverfiles.NginxDir + "/*.conf",
		"emperor = " + serverfiles.VassalsDir, "emperor-stats = " + serverfiles.EmperorStatsSocket,
		"root " + serverfiles.PagesDir + ";",
	} {
		if !strings.Contains(all.String(), p) {
			t.Errorf("no server file contains %q", p)
		}
	}
}

// runScript runs the script with no PATH at all: only bash builtins work, so
// even a broken script cannot change this machine.
func runScript(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/bash", append([]string{serverfiles.ScriptName}, args...)...)
	cmd.Env = []string{"PATH=/nonexistent", "LANG=C.UTF-8"}
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

func TestScriptRejectsBadPackageNames(t *testing.T) {
	for _, name := range []string{"Nginx", "a", "-o", "--purge", "x;touch /tmp/owned", "two words", "pkg\nname", "ünicode", "_x", ""} {
		stdout, stderr, err := runScript(t, "libpq5", name)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("package %q: %v, want exit status 1", name, err)
		}
		if !strings.Contains(stderr, "is not a Debian package name") || stdout != "" {
			t.Errorf("package %q: stdout %q, stderr %q; want only the rejection", name, stdout, stderr)
		}
	}
	// Real names pass validation (and then stop at the root check, which
	// needs id(1), absent from PATH here).
	for _, name := range []string{"libpq5", "g++", "python3.11", "postgresql-15-postgis-3", "0ad"} {
		_, stderr, err := runScript(t, name)
		if err == nil || strings.Contains(stderr, "is not a Debian package name") {
			t.Errorf("package %q: %v, %q; want it accepted", name, err, stderr)
		}
	}
}

func TestSetupReportsScriptFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "setup")
	var stdout, stderr bytes.Buffer
	err := serverfiles.Setup(t.Context(), dir, []string{"Bad_Name"}, &stdout, &stderr)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(err.Error(), serverfiles.ScriptName) {
		t.Fatalf("Setup with a bad package: %v, want the script's exit error naming it", err)
	}
	if !strings.Contains(stderr.String(), "Bad_Name") {
		t.Errorf("stderr %q does not name the bad package", stderr.String())
	}
	checkExtracted(t, dir)
}

func TestSetupCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := serverfiles.Setup(ctx, filepath.Join(t.TempDir(), "setup"), nil, nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Setup with a cancelled context: %v, want context.Canceled", err)
	}
}
