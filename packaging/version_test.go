package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionScript walks a tree through the states version.sh tells apart: no git, commits
// without a tag, on a tag, after a tag, uncommitted changes, and a VERSION it refuses.
func TestVersionScript(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	script, err := filepath.Abs("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(name string) string {
		t.Helper()
		write(name, name)
		git("add", "-A")
		git("commit", "-q", "-m", name)
		return git("rev-parse", "--short=7", "HEAD")
	}
	version := func() (string, error) {
		out, err := exec.Command("sh", script, dir).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	write("VERSION", "0.3.0\n")
	steps := []struct {
		name  string
		setup func() string // returns the version expected
	}{
		{"no git: the VERSION file", func() string { return "0.3.0" }},
		{"first commit, no tag", func() string {
			git("init", "-q")
			return "0.3.0+git1." + commit("a")
		}},
		{"second commit, no tag", func() string { return "0.3.0+git2." + commit("b") }},
		{"on a tag", func() string { git("tag", "v1.2.0"); return "1.2.0" }},
		{"a tag that is no version is not used", func() string { git("tag", "latest"); return "1.2.0" }},
		{"one commit after the tag", func() string { return "1.2.0+git1." + commit("c") }},
		{"uncommitted changes", func() string {
			hash := git("rev-parse", "--short=7", "HEAD")
			write("c", "changed")
			return "1.2.0+git1." + hash + ".dirty"
		}},
	}
	for _, step := range steps {
		want := step.setup()
		got, err := version()
		if err != nil || got != want {
			t.Fatalf("%s: version.sh = %q, %v; want %q", step.name, got, err, want)
		}
	}

	// Versions that Debian would refuse stop the build with the reason.
	for name, bad := range map[string]func(){
		"VERSION not starting with a digit": func() { write("VERSION", "dev\n") },
		"tag that is no Debian version": func() {
			write("VERSION", "0.3.0\n")
			git("tag", "v1.3.0_rc1")
		},
	} {
		bad()
		got, err := version()
		if err == nil || !strings.Contains(got, "version.sh:") {
			t.Errorf("%s: version.sh = %q, %v; want an error naming the script", name, got, err)
		}
	}
}
