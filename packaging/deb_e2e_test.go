//go:build e2e

package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (CI=true, so not skipping)")
		}
		t.Skip("needs root")
	}
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// built is the package `make deb` makes from this tree, once for all the tests.
var built struct {
	once         sync.Once
	deb, version string
	dir, failure string
}

func buildDeb(t *testing.T) (deb, version string) {
	t.Helper()
	receivertest.RequireTools(t, "make", "dpkg-deb", "dpkg")
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "gitreceive-deb-test-")
		if err != nil {
			built.failure = err.Error()
			return
		}
		built.dir = dir
		makeDeb := exec.Command("make", "-C", "..", "--no-print-directory", "deb", "DEB_DIR="+dir)
		// Under make test, the outer make's flags and jobserver are not this make's business.
		for _, kv := range os.Environ() {
			if name, _, _ := strings.Cut(kv, "="); name != "MAKEFLAGS" && name != "MFLAGS" && name != "MAKELEVEL" {
				makeDeb.Env = append(makeDeb.Env, kv)
			}
		}
		out, err := makeDeb.CombinedOutput()
		if err != nil {
			built.failure = "make deb: " + err.Error() + "\n" + string(out)
			return
		}
		v, err := exec.Command("sh", "version.sh").Output()
		if err != nil {
			built.failure = "version.sh: " + err.Error()
			return
		}
		built.version = strings.TrimSpace(string(v))
		arch, err := exec.Command("dpkg", "--print-architecture").Output()
		if err != nil {
			built.failure = "dpkg --print-architecture: " + err.Error()
			return
		}
		built.deb = filepath.Join(dir, "gitreceive_"+built.version+"_"+strings.TrimSpace(string(arch))+".deb")
		if _, err := os.Stat(built.deb); err != nil {
			built.failure = "make deb did not make " + built.deb + ":\n" + string(out)
		}
	})
	if built.failure != "" {
		t.Fatal(built.failure)
	}
	return built.deb, built.version
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// TestDebContents checks what dpkg-deb -c lists: exactly the package's files, owned by root,
// with their modes.
func TestDebContents(t *testing.T) {
	deb, _ := buildDeb(t)
	want := map[string]string{
		"./usr/bin/gitreceive":                     "-rwxr-xr-x",
		"./lib/systemd/system/gitreceive.service":  "-rw-r--r--",
		"./usr/share/man/man8/gitreceive.8.gz":     "-rw-r--r--",
		"./usr/share/doc/gitreceive/copyright":     "-rw-r--r--",
		"./usr/share/doc/gitreceive/changelog.gz":  "-rw-r--r--",
		"./usr/share/doc/gitreceive/README.md.gz":  "-rw-r--r--",
		"./usr/share/lintian/overrides/gitreceive": "-rw-r--r--",
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, nil, "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(line) // MODE OWNER SIZE DATE TIME PATH
		if len(f) != 6 {
			t.Fatalf("dpkg-deb -c: unexpected line %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", f[5], f[1])
		}
		if strings.HasPrefix(f[0], "d") {
			if f[0] != "drwxr-xr-x" {
				t.Errorf("directory %s has mode %s, want drwxr-xr-x", f[5], f[0])
			}
			continue
		}
		got[f[5]] = f[0]
	}
	for path, mode := range want {
		if got[path] != mode {
			t.Errorf("%s: mode %q, want %q", path, got[path], mode)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("unexpected file in the package: %s", path)
		}
	}
}

// TestDebCopyright checks the copyright file: machine-readable (DEP-5), and the license of the
// Go standard library and of every Go module linked into the packaged binary is in it.
func TestDebCopyright(t *testing.T) {
	deb, _ := buildDeb(t)
	extract := func(path string) string {
		return run(t, nil, "sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xO "$2"`, "sh", deb, path)
	}
	copyright := extract("./usr/share/doc/gitreceive/copyright")
	for _, want := range []string{
		"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n",
		"\nFiles: usr/bin/gitreceive\n", "\nLicense: gitreceive-unlicensed and Go-modules\n", "\nLicense: Go-modules\n",
		" ==== Go standard library go", "Apache License 2.0: /usr/share/common-licenses/Apache-2.0",
	} {
		receivertest.MustContain(t, copyright, want)
	}
	binary := filepath.Join(t.TempDir(), "gitreceive")
	if err := os.WriteFile(binary, []byte(extract("./usr/bin/gitreceive")), 0o755); err != nil {
		t.Fatal(err)
	}
	modules := 0
	for _, line := range strings.Split(run(t, nil, "go", "version", "-m", binary), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "dep" {
			modules++
			receivertest.MustContain(t, copyright, " ==== "+f[1]+" "+f[2]+" (")
		}
	}
	if modules < 5 {
		t.Fatalf("go version -m found %d modules in the packaged binary; is it a Go binary with its build info?", modules)
	}
}

// TestDebControl checks dpkg-deb -I's fields, the maintainer scripts (modes, sh -n), and that
// the packaged binary prints the package's version.
func TestDebControl(t *testing.T) {
	deb, version := buildDeb(t)
	arch := strings.TrimSpace(run(t, nil, "dpkg", "--print-architecture"))
	info := run(t, nil, "dpkg-deb", "-I", deb)
	for _, field := range []string{"Package: gitreceive", "Version: " + version, "Architecture: " + arch,
		"Depends: git", "Maintainer: ", "Installed-Size: ", "Description: "} {
		if !strings.Contains(info, "\n "+field) {
			t.Errorf("dpkg-deb -I has no %q:\n%s", field, info)
		}
	}

	ctrl := t.TempDir()
	run(t, nil, "dpkg-deb", "-e", deb, ctrl)
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		path := filepath.Join(ctrl, script)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		if st.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v, want 0755", script, st.Mode().Perm())
		}
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(text), "#!/bin/sh\n") || !strings.Contains(string(text), "\nset -e\n") {
			t.Errorf("%s does not start with #!/bin/sh and set -e", script)
		}
		run(t, nil, "sh", "-n", path)
		if _, err := exec.LookPath("dash"); err == nil {
			run(t, nil, "dash", "-n", path)
		}
	}

	root := t.TempDir()
	run(t, nil, "dpkg-deb", "-x", deb, root)
	bin := filepath.Join(root, "usr/bin/gitreceive")
	if got, want := strings.TrimSpace(run(t, nil, bin, "version")), "gitreceive "+version; got != want {
		t.Errorf("gitreceive version = %q, want %q", got, want)
	}
	if help := run(t, nil, bin, "--help"); !strings.Contains(help, "serve [--listen ADDR] [--data DIR]") {
		t.Errorf("gitreceive --help does not describe serve:\n%s", help)
	}
}

// TestDebUnit checks the systemd unit: what it runs, and systemd-analyze verify finds nothing
// (ExecStart pointed at the extracted binary, which is not installed on this host).
func TestDebUnit(t *testing.T) {
	deb, _ := buildDeb(t)
	root := t.TempDir()
	run(t, nil, "dpkg-deb", "-x", deb, root)
	text, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/gitreceive.service"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(text), "\n")
	for _, want := range []string{"ExecStart=/usr/bin/gitreceive serve --data /var/lib/gitreceive",
		"Restart=on-failure", "KillMode=mixed", "WantedBy=multi-user.target"} {
		if !slices.Contains(lines, want) {
			t.Errorf("the unit has no line %q", want)
		}
	}
	// The receiver sets this host up as a node: a private mount namespace or a read-only view
	// would hide or refuse what it writes and mounts (see the unit's comment).
	for _, line := range lines {
		for _, banned := range []string{"ProtectSystem=", "ProtectHome=", "PrivateTmp=", "ReadOnlyPaths=",
			"NoNewPrivileges=", "RestrictSUIDSGID=", "PrivateDevices=", "ProtectKernelTunables=", "RuntimeDirectory="} {
			if strings.HasPrefix(line, banned) {
				t.Errorf("the unit sets %q, which breaks what the receiver does as root", line)
			}
		}
	}

	receivertest.RequireTools(t, "systemd-analyze")
	unit := filepath.Join(t.TempDir(), "gitreceive.service")
	local := strings.ReplaceAll(string(text), "ExecStart=/usr/bin/gitreceive", "ExecStart="+filepath.Join(root, "usr/bin/gitreceive"))
	if err := os.WriteFile(unit, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	// --man=no: the man page is in the package, not installed here.
	if out := run(t, nil, "systemd-analyze", "verify", "--man=no", unit); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
}

// TestDebLintian runs lintian; the package's overrides say why each remaining tag is there.
func TestDebLintian(t *testing.T) {
	deb, _ := buildDeb(t)
	receivertest.RequireTools(t, "lintian")
	cmd := exec.Command("lintian", "--pedantic", "--fail-on", "error,warning,pedantic", deb)
	out, err := cmd.CombinedOutput()
	var findings []string
	for _, line := range strings.Split(string(out), "\n") {
		if len(line) > 2 && line[1] == ':' && strings.Contains("EWIPX", line[:1]) {
			findings = append(findings, line)
		}
	}
	if err != nil || len(findings) > 0 {
		t.Errorf("lintian: %v\n%s", err, out)
	}
}
