//go:build e2e

package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

const firstRunHint = "gitreceive keys add NAME --admin"

// TestDebInstallUpgradePurge has dpkg itself install the package into a throwaway root
// (--root, with the maintainer scripts run outside a chroot and DPKG_ROOT set, as dpkg does for
// such installs), upgrade it over an older one, remove and purge it, with the real
// deb-systemd-helper. With DPKG_ROOT set the scripts start and stop no service; that part is
// TestDebMaintainerScriptsUnderSystemd's.
func TestDebInstallUpgradePurge(t *testing.T) {
	needRoot(t)
	deb, version := buildDeb(t)
	receivertest.RequireTools(t, "deb-systemd-helper", "dpkg-query")
	work := t.TempDir()
	old := olderPackage(t, deb, "0.0.1", work)

	root := filepath.Join(work, "root")
	for _, dir := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg := func(env []string, args ...string) string {
		t.Helper()
		// --force-depends: git is not in the throwaway root's database.
		return run(t, env, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless",
			"--force-depends", "--log=/dev/null"}, args...)...)
	}
	installed := func() string {
		t.Helper()
		out, _ := exec.Command("dpkg-query", "--root="+root, "-W", "-f=${Status} ${Version}", "gitreceive").Output()
		return string(out)
	}
	data := filepath.Join(root, "var/lib/gitreceive")
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/gitreceive.service")
	repo := filepath.Join(data, "repos/myapp.git/HEAD")

	// A first install: the data dir (root only), the unit enabled, the hint for the first key.
	out := dpkg(nil, "-i", old)
	if got := installed(); got != "install ok installed 0.0.1" {
		t.Fatalf("after installing 0.0.1, dpkg-query says %q", got)
	}
	if !strings.Contains(out, firstRunHint) {
		t.Errorf("a first install does not say how to add the first admin key:\n%s", out)
	}
	if st, err := os.Stat(data); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("data dir after install: %v, %v; want a directory with mode 0700", st, err)
	}
	if target, err := os.Readlink(wants); err != nil || target != "/lib/systemd/system/gitreceive.service" {
		t.Errorf("the unit is not enabled: %s -> %q, %v", wants, target, err)
	}
	for path, text := range map[string]string{repo: "ref: refs/heads/main\n", filepath.Join(data, "gitreceive.ini"): "domain = example.com\n"} {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The upgrade keeps data and enablement and does not greet again.
	out = dpkg(nil, "-i", deb)
	if got := installed(); got != "install ok installed "+version {
		t.Fatalf("after the upgrade, dpkg-query says %q, want version %s", got, version)
	}
	if strings.Contains(out, firstRunHint) {
		t.Errorf("an upgrade prints the first-install hint:\n%s", out)
	}
	if got := strings.TrimSpace(run(t, nil, filepath.Join(root, "usr/bin/gitreceive"), "version")); got != "gitreceive "+version {
		t.Errorf("the installed binary says %q, want gitreceive %s", got, version)
	}
	assertKept(t, repo, wants)

	// remove: the binary goes, the data stays.
	dpkg(nil, "-r", "gitreceive")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/gitreceive")); !os.IsNotExist(err) {
		t.Errorf("the binary is still there after remove: %v", err)
	}
	assertKept(t, repo)

	// purge: systemd's state goes, the data stays, and the operator is told how to remove it.
	out = dpkg(nil, "-P", "gitreceive")
	if got := installed(); got != "" && !strings.HasPrefix(got, "unknown") && !strings.HasPrefix(got, "deinstall ok not-installed") {
		t.Errorf("after purge, dpkg-query says %q", got)
	}
	if !strings.Contains(out, "kept "+data) || !strings.Contains(out, "GITRECEIVE_PURGE_DATA=yes") {
		t.Errorf("purge does not say the data dir was kept and how to remove it:\n%s", out)
	}
	assertKept(t, repo)
	for _, link := range []string{wants, filepath.Join(root, "etc/systemd/system/gitreceive.service")} {
		if _, err := os.Lstat(link); !os.IsNotExist(err) {
			t.Errorf("%s is left after purge: %v", link, err)
		}
	}

	// Asked for, purge removes the data too.
	dpkg(nil, "-i", deb)
	out = dpkg([]string{"GITRECEIVE_PURGE_DATA=yes"}, "-P", "gitreceive")
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("purge with GITRECEIVE_PURGE_DATA=yes left %s: %v\n%s", data, err, out)
	}
}

func assertKept(t *testing.T, paths ...string) {
	t.Helper()
	for _, path := range paths {
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("%s is gone: %v", path, err)
		}
	}
}

// olderPackage repackages deb's binary as version into dir, with build-deb.sh like make deb.
func olderPackage(t *testing.T, deb, version, dir string) string {
	t.Helper()
	x := filepath.Join(dir, "older")
	run(t, nil, "dpkg-deb", "-x", deb, x)
	arch := strings.TrimSpace(run(t, nil, "dpkg", "--print-architecture"))
	out := run(t, nil, "sh", "build-deb.sh", filepath.Join(x, "usr/bin/gitreceive"), version, arch, dir)
	return strings.TrimSpace(out)
}

// TestDebMaintainerScriptsUnderSystemd runs the maintainer scripts as dpkg would on a systemd
// host, in a private mount namespace: /run (with /run/systemd/system, which says systemd is
// running) and /var/lib are empty tmpfs there, and deb-systemd-helper, deb-systemd-invoke and
// systemctl are stubs that record their arguments. It checks what each step asks systemd.
func TestDebMaintainerScriptsUnderSystemd(t *testing.T) {
	needRoot(t)
	deb, _ := buildDeb(t)
	receivertest.RequireTools(t, "unshare", "mount")
	ctrl := t.TempDir()
	run(t, nil, "dpkg-deb", "-e", deb, ctrl)
	stubs := t.TempDir()
	calls := filepath.Join(t.TempDir(), "calls")
	for _, name := range []string{"deb-systemd-helper", "deb-systemd-invoke", "systemctl"} {
		stub := "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> " + calls + "\n"
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		script string
		args   []string
		want   []string // the stubs' calls, in order
		say    string   // in the script's output
	}{
		{"postinst", []string{"configure"}, []string{
			"deb-systemd-helper unmask gitreceive.service",
			"deb-systemd-helper --quiet was-enabled gitreceive.service",
			"deb-systemd-helper enable gitreceive.service",
			"systemctl --system daemon-reload",
			"deb-systemd-invoke start gitreceive.service"},
			"the service gitreceive listens on port 2222 (logs: journalctl -u gitreceive)"},
		// An upgrade: the old receiver stops (drains) before its binary is replaced, the new
		// one starts in postinst.
		{"prerm", []string{"upgrade", "0.2.0"}, []string{"deb-systemd-invoke stop gitreceive.service"}, ""},
		{"prerm", []string{"failed-upgrade", "0.2.0"}, nil, ""},
		{"postinst", []string{"configure", "0.0.1"}, []string{
			"deb-systemd-helper unmask gitreceive.service",
			"deb-systemd-helper --quiet was-enabled gitreceive.service",
			"deb-systemd-helper enable gitreceive.service",
			"systemctl --system daemon-reload",
			"deb-systemd-invoke restart gitreceive.service"}, ""},
		{"prerm", []string{"remove"}, []string{"deb-systemd-invoke stop gitreceive.service"}, ""},
		{"postrm", []string{"remove"}, []string{
			"systemctl --system daemon-reload",
			"deb-systemd-helper mask gitreceive.service"}, ""},
		{"postrm", []string{"purge"}, []string{
			"deb-systemd-helper purge gitreceive.service",
			"deb-systemd-helper unmask gitreceive.service"}, ""},
	}
	for _, step := range steps {
		os.Remove(calls)
		script := filepath.Join(ctrl, step.script)
		inner := `set -e
mount -t tmpfs gitreceive-test /run
mkdir -p /run/systemd/system
mount -t tmpfs gitreceive-test /var/lib
exec "$0" "$@"`
		cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", inner, script}, step.args...)...)
		cmd.Env = append(os.Environ(), "PATH="+stubs+":"+os.Getenv("PATH"), "DPKG_ROOT=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", step.script, step.args, err, out)
		}
		if !strings.Contains(string(out), step.say) {
			t.Errorf("%s %v does not say %q:\n%s", step.script, step.args, step.say, out)
		}
		text, err := os.ReadFile(calls)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		got := strings.Split(strings.TrimSpace(string(text)), "\n")
		if len(text) == 0 {
			got = nil
		}
		if strings.Join(got, "\n") != strings.Join(step.want, "\n") {
			t.Errorf("%s %v asked systemd:\n%s\nwant:\n%s", step.script, step.args, strings.Join(got, "\n"), strings.Join(step.want, "\n"))
		}
	}
}
