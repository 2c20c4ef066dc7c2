package agent

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// file is one file of a release the test writes.
type file struct {
	content string
	mode    fs.FileMode
}

// How `run` resolves a script name in a release: pure path logic, no root (running the script as
// the app user is run_test.go's, tag e2e).
func TestResolveScript(t *testing.T) {
	base := t.TempDir()
	release := filepath.Join(base, "releases", "v1")
	system := filepath.Join(base, "system")
	outside := filepath.Join(base, "outside")
	for name, f := range map[string]file{
		"bin/tool.sh":         {mode: 0o755, content: "#!/bin/sh\n"},
		"bin/task.py":         {content: "print(1)\n"},
		"bin/page.php":        {content: "<?php\n"},
		"bin/plain":           {content: "#!/bin/sh\n"},
		"bin/both":            {mode: 0o755, content: "#!/bin/sh\n"},
		"both":                {mode: 0o755, content: "#!/bin/sh\n"},
		"top.sh":              {mode: 0o755, content: "#!/bin/sh\n"},
		"manage.py":           {content: "print(1)\n"},
		"src/deep.sh":         {mode: 0o755, content: "#!/bin/sh\n"},
		"../../system/sys":    {mode: 0o755, content: "#!/bin/sh\n"},
		"../../system/top.sh": {mode: 0o755, content: "#!/bin/sh\n"},
		"../../system/noexec": {content: "#!/bin/sh\n"},
		"../../outside/x":     {mode: 0o755, content: "#!/bin/sh\n"},
	} {
		p := filepath.Join(release, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := f.mode
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(p, []byte(f.content), mode); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"bin/abs-out":  filepath.Join(outside, "x"),
		"bin/rel-out":  "../../../outside/x",
		"bin/in-link":  "../top.sh",
		"bin/dangling": "../nowhere",
		"bin/dir-out":  outside,
		"bin/loop":     "loop",
		"src/up":       "..",
	} {
		if err := os.Symlink(target, filepath.Join(release, link)); err != nil {
			t.Fatal(err)
		}
	}
	pathEnv := filepath.Join(release, "bin") + ":relative/dir::" + system
	py := func(p string) []string {
		return []string{python3Path, filepath.Join(release, p), "arg"}
	}
	direct := func(p string) []string { return []string{p, "arg"} }
	for _, c := range []struct {
		script string
		argv   []string
		err    string
	}{
		{"tool.sh", direct(filepath.Join(release, "bin/tool.sh")), ""},
		{"bin/tool.sh", direct(filepath.Join(release, "bin/tool.sh")), ""},
		{"./bin/tool.sh", direct(filepath.Join(release, "bin/tool.sh")), ""},
		{"top.sh", direct(filepath.Join(release, "top.sh")), ""}, // the release before the PATH
		{"./top.sh", direct(filepath.Join(release, "top.sh")), ""},
		{"both", direct(filepath.Join(release, "bin/both")), ""}, // bin/ first
		{"task.py", py("bin/task.py"), ""},
		{"manage.py", py("manage.py"), ""},
		{"src/deep.sh", direct(filepath.Join(release, "src/deep.sh")), ""},
		{"in-link", direct(filepath.Join(release, "top.sh")), ""},
		{"bin/in-link", direct(filepath.Join(release, "top.sh")), ""},
		{"src/up/top.sh", direct(filepath.Join(release, "top.sh")), ""},
		{"sys", direct(filepath.Join(system, "sys")), ""},
		{"plain", nil, `script "plain" is not executable: chmod +x it in the repository, or name it .py or .php`},
		{"bin/plain", nil, `script "bin/plain" is not executable`},
		{"noexec", nil, `script "noexec" is not in the release's bin/ or top directory, nor on its PATH`}, // passed over on the PATH
		{"missing", nil, `script "missing" is not in the release's bin/ or top directory, nor on its PATH`},
		{"bin/missing", nil, `script "bin/missing" is not in the release`},
		{"top.sh/x", nil, `script "top.sh/x" is not in the release`},
		{"src", nil, `script "src" is not in the release's bin/`}, // a directory is passed over
		{"bin", nil, `script "bin" is not in the release's bin/`},
		{"src/", nil, `script "src/" is refused`},
		{"bin/", nil, `script "bin/" is refused`},
		{"../../etc/passwd", nil, `script "../../etc/passwd" is refused: a path must lead inside the release`},
		{"/etc/passwd", nil, `script "/etc/passwd" is refused`},
		{"bin/../../x", nil, `script "bin/../../x" is refused`},
		{"bin/../top.sh", nil, `script "bin/../top.sh" is refused`},
		{"bin//tool.sh", nil, `script "bin//tool.sh" is refused`},
		{"..", nil, `script ".." is not a file name`},
		{".", nil, `script "." is not a file name`},
		{"", nil, `script "" is not a file name`},
		{"./", nil, `script "./" is refused`},
		{"a\x00b", nil, `script "a\x00b" is not a file name`},
		{"abs-out", nil, `script "abs-out" is refused: bin/abs-out leads outside the release`},
		{"bin/abs-out", nil, `script "bin/abs-out" is refused: bin/abs-out leads outside the release`},
		{"bin/rel-out", nil, `script "bin/rel-out" is refused: bin/rel-out leads outside the release`},
		{"bin/dir-out/x", nil, `script "bin/dir-out/x" is refused: bin/dir-out/x leads outside the release`},
		{"dangling", nil, `script "dangling": bin/dangling is a broken symlink`},
		{"bin/loop", nil, `script "bin/loop": bin/loop is a broken symlink`},
	} {
		argv, err := scriptCommand(release, c.script, pathEnv, []string{"arg"})
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.script, err)
		case c.err == "" && fmt.Sprint(argv) != fmt.Sprint(c.argv):
			t.Errorf("%q: argv %q, want %q", c.script, argv, c.argv)
		case c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)):
			t.Errorf("%q: argv %q error %v, want %s...", c.script, argv, err, c.err)
		}
	}

	saved := phpPath
	t.Cleanup(func() { phpPath = saved })
	phpPath = filepath.Join(base, "no-php")
	if _, err := scriptCommand(release, "page.php", pathEnv, nil); err == nil || err.Error() != `script "page.php" needs `+phpPath+`: add php-cli to app.ini's packages` {
		t.Errorf("php without php: %v", err)
	}
	phpPath = filepath.Join(system, "sys")
	if argv, err := scriptCommand(release, "page.php", pathEnv, []string{"a"}); err != nil || fmt.Sprint(argv) != fmt.Sprint([]string{phpPath, filepath.Join(release, "bin/page.php"), "a"}) {
		t.Errorf("php: %q %v", argv, err)
	}
}
