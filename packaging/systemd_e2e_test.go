//go:build e2e

package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// bootSystemd is the script that boots systemd as PID 1 of new PID, mount, network, UTS and
// IPC namespaces, on an overlay of this machine's / whose writes go to a tmpfs ($1): a Debian
// system with systemd running, offline, that forgets everything when the test ends.
const bootSystemd = `set -eu
mount -t tmpfs -o size=2g tmpfs "$1"
mkdir "$1/upper" "$1/work" "$1/root"
mount -t overlay overlay -o lowerdir=/,upperdir="$1/upper",workdir="$1/work" "$1/root"
r=$1/root
mount --rbind /dev "$r/dev"
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount -t tmpfs tmpfs "$r/run"
mount -t tmpfs tmpfs "$r/tmp"
# A container image's policy-rc.d forbids starting services; this system may.
rm -f "$r/usr/sbin/policy-rc.d"
# man-db's trigger re-indexes every manual page after each install: half a minute, nothing tested.
rm -f "$r/var/lib/man-db/auto-update"
export container=other
exec chroot "$r" /lib/systemd/systemd --system --log-target=console --log-level=warning
`

// systemdHost is a booted systemd (bootSystemd); in runs a shell script inside it.
type systemdHost struct {
	pid string // systemd's PID, as this machine sees it
}

func startSystemd(t *testing.T) *systemdHost {
	t.Helper()
	for _, tool := range []string{"/lib/systemd/systemd", "unshare", "nsenter", "apt-get"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s: %v", tool, err)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount", "--net", "--uts", "--ipc", "--propagation", "private",
		"sh", "-c", bootSystemd, "sh", dir)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &systemdHost{}
	t.Cleanup(func() {
		if h.pid != "" {
			pid, _ := strconv.Atoi(h.pid)
			_ = syscall.Kill(pid, syscall.SIGKILL) // PID 1 of its namespace: everything in it goes
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("systemd's console:\n%s", log.String())
		}
	})
	// unshare's child becomes systemd (sh execs chroot, which execs systemd).
	children := fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		data, _ := os.ReadFile(children)
		if f := strings.Fields(string(data)); len(f) == 1 {
			comm, _ := os.ReadFile("/proc/" + f[0] + "/comm")
			if strings.TrimSpace(string(comm)) == "systemd" {
				h.pid = f[0]
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd did not start in its namespaces:\n%s", log.String())
		}
	}
	// Until its bus is up systemctl cannot ask; degraded is fine: some of this machine's units
	// cannot run in a container.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		state := h.try(t, "", "timeout 60 systemctl is-system-running --wait")
		if strings.HasPrefix(state, "running") || strings.HasPrefix(state, "degraded") {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd did not finish booting: %s\n%s", state, log.String())
		}
	}
}

// try runs script inside the booted system and returns its output, whatever its exit status.
func (h *systemdHost) try(t *testing.T, stdin, script string) string {
	t.Helper()
	cmd := exec.Command("nsenter", "-t", h.pid, "-m", "-u", "-i", "-n", "-p", "-r", "-w", "sh", "-c", script)
	cmd.Stdin = strings.NewReader(stdin)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// in runs script inside the booted system; it must succeed.
func (h *systemdHost) in(t *testing.T, stdin, script string) string {
	t.Helper()
	cmd := exec.Command("nsenter", "-t", h.pid, "-m", "-u", "-i", "-n", "-p", "-r", "-w", "sh", "-c", script)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in the booted system: %s: %v\n%s", script, err, out)
	}
	return string(out)
}

// TestDebWithSystemdRunning installs the package with apt on a system where systemd runs (this
// machine's Debian, booted in namespaces over an overlay, offline), upgrades it over the
// running receiver and stops it: the service starts and listens, logs to the journal, is
// stopped gracefully (exit 0) and replaced by the new version on the same data dir.
func TestDebWithSystemdRunning(t *testing.T) {
	needRoot(t)
	deb, version := buildDeb(t)
	older := olderPackage(t, deb, "0.0.1", t.TempDir())
	h := startSystemd(t)
	for name, path := range map[string]string{"old.deb": older, "new.deb": deb} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		h.in(t, string(data), "cat > /root/"+name)
	}
	status := func() string {
		return h.in(t, "", "systemctl show -p ActiveState,SubState,MainPID,ExecMainStatus gitreceive")
	}
	listening := func(version string) {
		t.Helper()
		want := fmt.Sprintf(`"version":%q`, version)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if j := h.try(t, "", "journalctl -u gitreceive -o cat --no-pager"); strings.Contains(j, want) && strings.Contains(j, `"message":"listening"`) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the journal has no \"listening\" of version %s; service: %s\n%s", version, status(),
					h.try(t, "", "journalctl -u gitreceive -o cat --no-pager"))
			}
		}
	}

	out := h.in(t, "", "apt-get install -y /root/old.deb 2>&1")
	receivertest.MustContain(t, out, firstRunHint)
	receivertest.MustContain(t, status(), "ActiveState=active\nSubState=running\n")
	listening(strings.TrimSpace(h.in(t, "", "/usr/bin/gitreceive version | cut -d' ' -f2")))
	receivertest.MustContain(t, h.in(t, "", "ss -ltn"), ":2222")
	hostKey := h.in(t, "", "ssh-keygen -lf /var/lib/gitreceive/ssh_host_ed25519_key")
	oldPID := h.in(t, "", "systemctl show -p MainPID --value gitreceive")

	// The upgrade over the running receiver: prerm stops it (it drains and exits 0), postinst
	// starts the new one, which takes over the data dir.
	h.in(t, "", "apt-get install -y /root/new.deb 2>&1")
	receivertest.MustContain(t, h.in(t, "", "dpkg-query -W -f '${Version}' gitreceive"), version)
	receivertest.MustContain(t, status(), "ActiveState=active\nSubState=running\n")
	if newPID := h.in(t, "", "systemctl show -p MainPID --value gitreceive"); newPID == oldPID {
		t.Fatalf("the receiver (PID %s) was not restarted by the upgrade", oldPID)
	}
	journal := h.in(t, "", "journalctl -u gitreceive -o cat --no-pager")
	for _, want := range []string{`"message":"signal received: stopping"`, `"message":"stopped"`} {
		receivertest.MustContain(t, journal, want)
	}
	if got := h.in(t, "", "ssh-keygen -lf /var/lib/gitreceive/ssh_host_ed25519_key"); got != hostKey {
		t.Fatalf("the upgrade changed the host key: %s -> %s", hostKey, got)
	}

	// systemctl stop: SIGTERM, a graceful stop, exit status 0.
	h.in(t, "", "systemctl stop gitreceive")
	st := status()
	receivertest.MustContain(t, st, "ActiveState=inactive\n")
	receivertest.MustContain(t, st, "ExecMainStatus=0\n")
}
