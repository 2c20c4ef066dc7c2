package serverfiles

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Names inside a directory written by Extract.
const (
	ScriptName = "update-server-script.sh"
	RootName   = "serverroot"
)

// Where the node's stack is, as set up by the script and serverroot/; the
// code that deploys releases writes here. A test checks these against the
// embedded files.
const (
	AppsDir            = "/srv/gitreceive/apps"               // releases: APP/INSTANCE/releases/vN
	NginxDir           = "/etc/gitreceive/nginx"              // one server-block file per instance (*.conf)
	VassalsDir         = "/etc/gitreceive/vassals"            // one uWSGI vassal file per running release (*.ini)
	EmperorStatsSocket = "/run/gitreceive/emperor-stats.sock" // connect after writing a vassal: the emperor scans at once
	PagesDir           = "/usr/share/gitreceive/pages"        // 404.html, 503.html
)

// Stack is the node's Debian packages, the ones update-server-script.sh
// always installs (a test keeps the two lists equal). python3 itself, not
// only uWSGI's libpython: `run` and update_fetch run .py scripts with it.
var Stack = []string{"nginx", "uwsgi-core", "uwsgi-emperor", "uwsgi-plugin-python3", "uwsgi-plugin-php", "python3"}

// all: so that a file starting with "." or "_" in serverroot/ is never
// silently left out.
//
//go:embed update-server-script.sh all:serverroot
var embedded embed.FS

// scriptEnv is the script's whole environment (plus SERVERROOT): nothing of
// the caller's environment (tokens, proxies, locale) leaks into a node's setup.
var scriptEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LANG=C.UTF-8",
	"HOME=/root",
}

// scriptWaitDelay bounds the wait for the script's output pipes after it has
// exited or been killed; a daemon it started must not hold them open.
const scriptWaitDelay = 5 * time.Second

// Extract writes the script (mode 0755) and serverroot/ (directories 0755,
// files 0644) into dir, replacing whatever dir held. The tree is written into
// a temporary sibling of dir and renamed into place, so dir is either the old
// tree, the new one, or briefly absent; never half written.
func Extract(dir string) error {
	if dir == "" {
		return errors.New("serverfiles: extract: no directory given")
	}
	dir = filepath.Clean(dir)
	parent, base := filepath.Dir(dir), filepath.Base(dir)
	tmp, err := os.MkdirTemp(parent, "."+base+".new-")
	if err != nil {
		return fmt.Errorf("serverfiles: extract to %s: %w", dir, err)
	}
	if err := writeTree(tmp); err != nil {
		return errors.Join(fmt.Errorf("serverfiles: extract to %s: %w", dir, err), os.RemoveAll(tmp))
	}
	if err := replace(dir, tmp); err != nil {
		return errors.Join(fmt.Errorf("serverfiles: extract to %s: %w", dir, err), os.RemoveAll(tmp))
	}
	return nil
}

// writeTree copies the embedded files into the empty directory dir.
func writeTree(dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil { // MkdirTemp made it 0700
		return err
	}
	return fs.WalkDir(embedded, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || name == "." {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		if d.IsDir() {
			if err := os.Mkdir(target, 0o755); err != nil {
				return err
			}
			return os.Chmod(target, 0o755) // not subject to the umask
		}
		data, err := embedded.ReadFile(name)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if name == ScriptName {
			mode = 0o755
		}
		if err := os.WriteFile(target, data, mode); err != nil {
			return err
		}
		return os.Chmod(target, mode)
	})
}

// replace renames the finished tree tmp to dir. An existing dir is first
// moved aside into a hidden sibling and removed afterwards.
func replace(dir, tmp string) error {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return os.Rename(tmp, dir)
	} else if err != nil {
		return err
	}
	aside, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".old-")
	if err != nil {
		return err
	}
	old := filepath.Join(aside, "old")
	if err := os.Rename(dir, old); err != nil {
		return errors.Join(err, os.Remove(aside))
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Put the old tree back rather than leave nothing at dir.
		return errors.Join(err, os.Rename(old, dir), os.RemoveAll(aside))
	}
	return os.RemoveAll(aside)
}

// Setup extracts the server files into dir and runs the setup script as
// `bash dir/update-server-script.sh PACKAGES...` with SERVERROOT set, in its
// own process group, streaming its output to stdout and stderr. It must run
// as root on the node being set up. Cancelling ctx kills the script and
// whatever it runs (apt-get included); nginx and the emperor, once started,
// are daemons in their own sessions and keep running.
func Setup(ctx context.Context, dir string, packages []string, stdout, stderr io.Writer) error {
	// The script wants an absolute SERVERROOT; the process runs in /.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("serverfiles: setup: %w", err)
	}
	if err := Extract(dir); err != nil {
		return err
	}
	script := filepath.Join(dir, ScriptName)
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, packages...)...)
	cmd.Env = append(slices.Clone(scriptEnv), "SERVERROOT="+filepath.Join(dir, RootName))
	cmd.Dir = "/"
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = scriptWaitDelay
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("serverfiles: %s stopped: %w (%w); rerun setup to finish it", script, ctxErr, err)
		}
		return fmt.Errorf("serverfiles: %s: %w (its output above says which step failed)", script, err)
	}
	return nil
}
