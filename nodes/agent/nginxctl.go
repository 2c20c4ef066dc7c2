package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// lockNginxDir takes the routing lock in dir, waiting for another agent
// (every 50 ms, until ctx ends).
func lockNginxDir(ctx context.Context, dir string) (unlock func(), err error) {
	return lockFile(ctx, filepath.Join(dir, lockName), "another routing change")
}

// lockFile takes an exclusive flock on path (made 0600 if need be),
// waiting for whoever holds it (every 50 ms, until ctx ends: holder names
// them in the error). Closing releases the lock.
func lockFile(ctx context.Context, path, holder string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for %s to finish (%s): %w", holder, f.Name(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func readOld(path string) ([]byte, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	return data, err == nil, err
}

// restoreConf puts path back as it was: old, or no file when there was none.
func restoreConf(path string, old []byte, hadOld bool) error {
	if hadOld {
		return atomicfile.Write(path, old, 0o644)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// nginxTest runs nginx -t on the whole configuration; the error quotes
// nginx's complaint.
func nginxTest(ctx context.Context) error {
	out, err := runTool(ctx, nginxCommand, "-t", "-q")
	if err != nil {
		return fmt.Errorf("nginx -t: %s", quoteOutput(out, err))
	}
	return nil
}

// nginxReload makes nginx read its configuration again: through systemd
// when it is PID 1 (it started nginx and tracks its master), else with a
// signal to the master named by nginx's pid file. Either only sends the
// signal; nginx then starts new workers and tells the old ones to stop
// taking connections. nginxReload waits for that (up to reloadWait), so
// that when it returns new connections get the new routing, and so that a
// reload nginx did not carry out (its master keeps the old workers and
// logs why) is an error rather than a silent success.
func nginxReload(ctx context.Context) error {
	master, old := nginxWorkers()
	if _, err := os.Stat(systemdRunDir); err == nil {
		if out, err := runTool(ctx, systemctlCommand, "reload", "nginx"); err != nil {
			return fmt.Errorf("systemctl reload nginx failed (see journalctl -u nginx): %s", quoteOutput(out, err))
		}
	} else if out, err := runTool(ctx, nginxCommand, "-s", "reload"); err != nil {
		return fmt.Errorf("nginx -s reload failed (is nginx running? the node's setup starts it): %s", quoteOutput(out, err))
	}
	if master == 0 {
		return nil // no master found before the reload: nothing to watch
	}
	deadline := time.Now().Add(reloadWait)
	for {
		_, now := nginxWorkers()
		if len(now) > 0 && !slices.ContainsFunc(now, func(pid int) bool { return slices.Contains(old, pid) }) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx (master pid %d) was told to reload, but %s later its old workers still take connections: "+
				"it did not load the new configuration; see /var/log/nginx/error.log", master, reloadWait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for nginx to reload: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// nginxWorkers returns nginx's master pid (from its pid file) and the pids
// of its workers that take connections: children titled "nginx: worker
// process" (a worker told to stop renames itself "... is shutting down").
// It returns 0 when there is no live master.
func nginxWorkers() (master int, workers []int) {
	data, err := os.ReadFile(nginxPidFile)
	if err != nil {
		return 0, nil
	}
	master, err = strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || master <= 0 || parentPID(master) < 0 {
		return 0, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentPID(pid) != master {
			continue
		}
		// nginx writes its title over its arguments: "TITLE\0".
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		title, _, _ := strings.Cut(string(cmdline), "\x00")
		if err == nil && strings.TrimSpace(title) == "nginx: worker process" {
			workers = append(workers, pid)
		}
	}
	return master, workers
}

// parentPID reads pid's parent from /proc/PID/stat; -1 when pid is gone.
func parentPID(pid int) int {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return -1
	}
	// "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}

// runTool runs a system tool, found in PATH or in the sbin directories a
// minimal PATH (an SSH session) may lack, and returns its output.
func runTool(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, nginxTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, toolPath(name), args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

func toolPath(name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	return name // exec reports it missing
}

func isExecutable(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

// nginxLogPrefix is the time and pid nginx starts its messages with; the
// level that follows is kept.
var nginxLogPrefix = regexp.MustCompile(`(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (\[\w+\]) \d+#\d+: `)

// quoteOutput is a tool's output for an error message: its text, trimmed
// and bounded, or the exit error when it printed nothing.
func quoteOutput(out []byte, err error) string {
	text := strings.TrimSpace(nginxLogPrefix.ReplaceAllString(string(out), "nginx: $1 "))
	if len(text) > 2000 {
		text = text[:2000] + "..."
	}
	if text == "" {
		return err.Error()
	}
	return fmt.Sprintf("%s (%v)", strings.ReplaceAll(text, "\n", "; "), err)
}
