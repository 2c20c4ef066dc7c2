package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func (ri runtimeInstance) updateFetch(ctx context.Context, n int, spec Spec, files instanceFiles,
	step FetchStep, env []string, out io.Writer) error {
	timeout := spec.healthTimeout()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	started := time.Now()
	if step.URLPath != "" {
		loc := spec.Locations[0]
		status, _, err := uwsgiGet(sctx, ri.socketPath(n), loc.Host, loc.Path, step.URLPath)
		if err != nil {
			return fmt.Errorf("update_fetch GET %s failed: %v", step.URLPath, err)
		}
		fmt.Fprintf(out, "update_fetch %s -> %d (%.2fs)\n", step.URLPath, status, time.Since(started).Seconds())
		if status >= 400 {
			return fmt.Errorf("update_fetch GET %s answered %d", step.URLPath, status)
		}
		return nil
	}
	t := tenant{uid: files.vassal.UID, gid: files.vassal.GID}
	if err := ri.runFetchScript(sctx, files.vassal.ReleaseDir, step, env, t, out); err != nil {
		if sctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("update_fetch script %s did not finish within %s", step.Script, timeout)
		}
		return err
	}
	fmt.Fprintf(out, "update_fetch script %s: ok (%.2fs)\n", step.Script, time.Since(started).Seconds())
	return nil
}

// fetchCommand is the argv that runs an update_fetch script: .py with
// python3 (and the release's site directories), .php with php, anything
// else directly, which needs its executable bit.
func fetchCommand(release string, step FetchStep) ([]string, error) {
	script := filepath.Join(release, step.Script)
	real, err := filepath.EvalSymlinks(script)
	if err != nil {
		return nil, fmt.Errorf("update_fetch script %s: %w", step.Script, err)
	}
	if !strings.HasPrefix(real, release+"/") {
		return nil, fmt.Errorf("update_fetch script %s leads outside the release", step.Script)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("update_fetch script %s is not a file", step.Script)
	}
	return scriptArgv("update_fetch script "+step.Script, step.Script, release, real, fi.Mode(), step.Args)
}

// scriptArgv is the argv that runs the regular file real, found as name
// (whose suffix decides) for release: .py with python3 and the release's
// site directories, .php with php, anything else directly, which needs its
// executable bit. what names the script in errors.
func scriptArgv(what, name, release, real string, mode fs.FileMode, args []string) ([]string, error) {
	switch {
	case strings.HasSuffix(name, ".py"):
		// The environment (PYTHONPATH, SILVER_APP_DIR) gives python3 the
		// release's site directories and silvercustomize (pysupport).
		return append([]string{python3Path, real}, args...), nil
	case strings.HasSuffix(name, ".php"):
		if _, err := os.Stat(phpPath); err != nil {
			return nil, fmt.Errorf("%s needs %s: add php-cli to app.ini's packages", what, phpPath)
		}
		return append([]string{phpPath, real}, args...), nil
	case mode&0o111 != 0:
		return append([]string{real}, args...), nil
	}
	return nil, fmt.Errorf("%s is not executable: chmod +x it in the repository, or name it .py or .php", what)
}

// runFetchScript runs a script as the instance's user (in its cgroup) in the
// release with exactly the env file's environment and no shell; its output
// lines go to out.
func (ri runtimeInstance) runFetchScript(ctx context.Context, release string, step FetchStep, env []string, t tenant, out io.Writer) error {
	script, err := fetchCommand(release, step)
	if err != nil {
		return err
	}
	argv, cred, err := ri.asInstance(t, script)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = release
	cmd.Env = env
	lw := &lineWriter{out: out, prefix: "  "}
	cmd.Stdout = lw
	cmd.Stderr = lw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	// The whole process group: a script's children must not outlive it.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	lw.flush()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			return fmt.Errorf("update_fetch script %s exited with status %d", step.Script, exit.ExitCode())
		}
		return fmt.Errorf("update_fetch script %s failed: %v", step.Script, err)
	}
	return nil
}

// lineWriter copies whole lines to out, each with prefix, cut at
// maxLineBytes and at most maxScriptLines of them.
type lineWriter struct {
	out     io.Writer
	prefix  string
	partial []byte
	lines   int
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			if len(w.partial) > maxLineBytes {
				w.emit(w.partial)
				w.partial = w.partial[:0]
			}
			return len(p), nil
		}
		w.emit(w.partial[:i])
		w.partial = w.partial[i+1:]
	}
}

func (w *lineWriter) emit(line []byte) {
	w.lines++
	switch {
	case w.lines > maxScriptLines+1:
		return
	case w.lines == maxScriptLines+1:
		fmt.Fprintf(w.out, "%s... (more output not shown)\n", w.prefix)
		return
	}
	if len(line) > maxLineBytes {
		line = append(line[:maxLineBytes:maxLineBytes], "..."...)
	}
	fmt.Fprintf(w.out, "%s%s\n", w.prefix, bytes.TrimRight(line, "\r"))
}

func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.emit(w.partial)
		w.partial = nil
	}
}
