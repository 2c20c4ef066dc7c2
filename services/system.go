package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// commandEnv is the environment of every command a service runs: no
// variable of the caller (least of all a secret) leaks into it.
var commandEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LANG=C.UTF-8",
	"HOME=/root",
	"DEBIAN_FRONTEND=noninteractive",
}

// command is one program a service runs on its node.
type command struct {
	argv   []string
	stdin  io.Reader
	stdout io.Writer // nil: collected and returned
	env    []string  // added to commandEnv (secrets go here or in stdin, never in argv)
}

// run runs c; its error carries what the program said on stderr.
func (c command) run(ctx context.Context) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Env = append(append([]string{}, commandEnv...), c.env...)
	cmd.Dir = "/" // runuser's users cannot enter root's home
	cmd.Stdin = c.stdin
	var out, errBuf bytes.Buffer
	cmd.Stdout = &out
	if c.stdout != nil {
		cmd.Stdout = c.stdout
	}
	cmd.Stderr = &errBuf
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errBuf.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		if msg == "" {
			return nil, fmt.Errorf("%s: %w", c.argv[0], err)
		}
		return nil, fmt.Errorf("%s: %w: %s", c.argv[0], err, msg)
	}
	return out.Bytes(), nil
}

// runArgv runs argv with nothing on stdin and returns its stdout.
func runArgv(ctx context.Context, argv ...string) ([]byte, error) {
	return command{argv: argv}.run(ctx)
}

// missingPackages are the packages of pkgs that dpkg does not have installed.
func missingPackages(ctx context.Context, pkgs []string) []string {
	var missing []string
	for _, p := range pkgs {
		out, err := runArgv(ctx, "dpkg-query", "-W", "-f=${Status}", p)
		if err != nil || !bytes.Contains(out, []byte("ok installed")) {
			missing = append(missing, p)
		}
	}
	return missing
}

// EnsurePackages installs what of pkgs is missing (apt-get update first,
// only then). It says what it installs on out.
func EnsurePackages(ctx context.Context, out io.Writer, pkgs []string) error {
	missing := missingPackages(ctx, pkgs)
	if len(missing) == 0 {
		return nil
	}
	list := strings.Join(missing, " ")
	fmt.Fprintf(out, "installing %s\n", list)
	// Another apt (unattended-upgrades, a second deploy) may hold dpkg's
	// lock: wait for it within ctx's time rather than fail at once.
	lock := "-oDPkg::Lock::Timeout=" + strconv.Itoa(aptLockWait(ctx))
	if _, err := runArgv(ctx, "apt-get", lock, "update", "-qq"); err != nil {
		return fmt.Errorf("apt-get update (to install %s): %w", list, err)
	}
	argv := append([]string{"apt-get", lock, "install", "-y", "-qq", "--no-install-recommends"}, missing...)
	if _, err := runArgv(ctx, argv...); err != nil {
		return fmt.Errorf("installing %s: %w", list, err)
	}
	fmt.Fprintf(out, "installed %s\n", list)
	return nil
}

// aptLockWait is how many seconds apt may wait for dpkg's lock: what is
// left of ctx's time, 120 without a deadline.
func aptLockWait(ctx context.Context) int {
	if dl, ok := ctx.Deadline(); ok {
		return max(1, int(time.Until(dl).Seconds()))
	}
	return 120
}

// systemdRunning is whether systemd manages services here; test-bed nodes
// and containers have none, and their servers are started by their init
// scripts.
func systemdRunning() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}

// startServer starts (or, with restart, restarts) a server by its systemd
// unit, else by its /etc/init.d script.
func startServer(ctx context.Context, unit string, restart bool) error {
	action := "start"
	if restart {
		action = "restart"
	}
	var err error
	if systemdRunning() {
		_, err = runArgv(ctx, "systemctl", action, unit)
	} else {
		_, err = runArgv(ctx, "/etc/init.d/"+unit, action)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", action, unit, err)
	}
	return nil
}

// writeIfChanged writes data to path unless it already holds exactly that;
// it says whether it wrote. The write is atomic (a reloading server reads
// the old file or the new one), and a file that was there keeps its owner
// (pg_hba.conf is postgres').
func writeIfChanged(path string, data []byte, mode os.FileMode) (bool, error) {
	uid, gid := -1, -1
	if old, err := os.ReadFile(path); err == nil {
		if bytes.Equal(old, data) {
			return false, os.Chmod(path, mode)
		}
		if st, err := os.Stat(path); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				uid, gid = int(sys.Uid), int(sys.Gid)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	return true, atomicfile.WriteOwned(path, data, mode, uid, gid)
}

// CopyToFile writes r to a new file at path (0600: dumps hold an app's
// data); an existing file is an error, never overwritten.
func CopyToFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
