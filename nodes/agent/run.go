package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// `ssh silver run APP SCRIPT ARGS...` (Silver Lining's `silver run`) runs a
// script of the live release on a node, as the app runs: runScript.

// runKillDelay is how long a script has between SIGTERM (its run was
// cancelled) and SIGKILL.
const runKillDelay = 5 * time.Second

// runScript runs script with args in release live of APP/INSTANCE, as
// `ssh silver run APP SCRIPT ARGS...` asks: as the instance's user, in its cgroup,
// in the release directory, with exactly the environment the app's vassal
// gets: the release's run/vN.env (the instance's env file when the release
// is not running), plus LANG=C.UTF-8 as the vassal sets it, plus, with tty,
// the agent's TERM (a terminal program needs it; the vassal has none).
//
// A script without '/' is looked up in the release's bin/, then its top
// directory, then the directories of the environment's PATH (the release's
// bin/ first, then the system's). A script with '/' must be a clean path
// inside the release ("./" in front is allowed): not absolute, no "..", no
// symlink leading out of the release. A file in the release that is
// neither .py, .php nor executable is refused (so is one that leads out of
// it), rather than passed over for one further down the PATH. A .py file
// runs with python3 and the release's site directories (lib/python, so its
// .pth files count, as in the vassal's bootstrap), a .php file with php,
// anything else directly.
//
// args are an argv vector, never seen by a shell. stdin, stdout and stderr
// are the script's (an *os.File is handed over as it is; other readers and
// writers are copied as data comes). runScript does not wait for stdin to
// end once the script has exited.
//
// The script runs in its own process group. With tty, when the agent has a
// controlling terminal (sshd's PTY) and is its foreground job, that group
// becomes the terminal's foreground process group while the script runs:
// the terminal is its controlling terminal, Ctrl-C, Ctrl-\ and window size
// changes go to the script alone (not to the agent, so an interactive
// script survives Ctrl-C if it wants to), and the agent takes the terminal
// back afterwards. Without a controlling terminal, or in the background,
// tty changes nothing. A script stopped by Ctrl-Z (or any stop signal) is
// continued at once: nothing could resume it.
//
// Cancelling ctx sends SIGTERM to the script's process group and SIGKILL 5 s
// later. Whatever it started is gone when runScript returns, whether the
// script ended by itself or not: the rest of its process group is killed,
// and so is every process it left behind that runs as the app user (the
// agent is their subreaper while the script runs, so even those that left
// the group or daemonized come back to it). runScript must be the only
// thing in its process that starts processes as the app user.
//
// The exit code is the script's, 128+N when a signal N ended it. err is for
// what kept the script from starting (no such release, not found, refused
// path, no environment, ctx already cancelled), never for a non-zero exit.
func (ri runtimeInstance) runScript(ctx context.Context, live int, r scriptRun, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	app, instance := ri.app, ri.name
	script, args, extraEnv, tty := r.name, r.args, r.env, r.tty
	if err := checkNames(app, instance, live); err != nil {
		return 0, err
	}
	for _, a := range args {
		if strings.ContainsRune(a, 0) {
			return 0, fmt.Errorf("script %q: an argument holds a NUL byte", script)
		}
	}
	rel := ri.releaseDir(live)
	if fi, err := os.Stat(rel); err != nil || !fi.IsDir() {
		return 0, fmt.Errorf("release v%d of %s/%s is not on this node (%s)", live, app, instance, rel)
	}
	release, err := filepath.EvalSymlinks(rel)
	if err != nil {
		return 0, err
	}
	env, err := ri.runEnv(live, tty)
	if err != nil {
		return 0, err
	}
	// The deployer's --env NAME=VALUE win over the release's (exec keeps
	// the last of a name).
	env = append(env, extraEnv...)
	argv, err := scriptCommand(release, script, envValue(env, "PATH"), args)
	if err != nil {
		return 0, err
	}
	t, err := ri.instanceUser(true)
	if err != nil {
		return 0, err
	}
	spec, _ := readSpec(ri.dir(), live) // limits: the release's, else the defaults
	if err := ri.ensureInstanceCgroup(spec); err != nil {
		return 0, err
	}
	cmd, cred, err := ri.asInstance(t, argv)
	if err != nil {
		return 0, err
	}
	return runAsApp(ctx, cmd, cred, t.uid, release, env, stdin, stdout, stderr, tty)
}

// runEnv is the environment a script of release n gets (see runScript).
func (ri runtimeInstance) runEnv(n int, tty bool) ([]string, error) {
	app, instance := ri.app, ri.name
	dir := ri.dir()
	var env []string
	var err error
	for _, p := range []string{filepath.Join(dir, runDirName, "v"+strconv.Itoa(n)+".env"), filepath.Join(dir, envFileName)} {
		env, err = readEnvFile(p)
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s/%s has no environment on this node (no %s): v%d was never started here", app, instance, filepath.Join(dir, envFileName), n)
	}
	if err != nil {
		return nil, fmt.Errorf("the environment of %s/%s: %w", app, instance, err)
	}
	// As the vassal file sets it; the env file wins, as in the bootstrap.
	if envValue(env, "LANG") == "" {
		env = append(env, "LANG=C.UTF-8")
	}
	if term := os.Getenv("TERM"); tty && term != "" && envValue(env, "TERM") == "" {
		env = append(env, "TERM="+term)
	}
	return env, nil
}

// envValue is KEY's value in env (KEY=VALUE entries), "" when unset.
func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// scriptCommand is the argv that runs script with args in release (a real
// path), looked up as runScript says; pathEnv is the script's PATH.
func scriptCommand(release, script, pathEnv string, args []string) ([]string, error) {
	real, mode, err := resolveScript(release, script, pathEnv)
	if err != nil {
		return nil, err
	}
	return scriptArgv(fmt.Sprintf("script %q", script), script, release, real, mode, args)
}

// scriptRun is what runScript runs: a script of the release (NAME or
// bin/NAME, see resolveScript), its arguments, NAME=VALUE pairs laid over
// the release's environment, and whether it gets the caller's terminal.
type scriptRun struct {
	name string
	args []string
	env  []string
	tty  bool
}

// resolveScript finds script for runScript in release (a real path) and
// returns the real path of the file to run and its mode. pathEnv is the
// script's PATH.
func resolveScript(release, script, pathEnv string) (string, fs.FileMode, error) {
	if script == "" || strings.ContainsRune(script, 0) {
		return "", 0, fmt.Errorf("script %q is not a file name", script)
	}
	if strings.Contains(script, "/") {
		return scriptInRelease(release, script)
	}
	if script == "." || script == ".." {
		return "", 0, fmt.Errorf("script %q is not a file name", script)
	}
	for _, p := range []string{"bin/" + script, script} {
		real, fi, err := releaseFile(release, p, script)
		if err != nil {
			return "", 0, err
		}
		if fi != nil && fi.Mode().IsRegular() {
			return real, fi.Mode(), nil
		}
	}
	if real, mode, ok := scriptOnPath(script, pathEnv); ok {
		return real, mode, nil
	}
	return "", 0, fmt.Errorf("script %q is not in the release's bin/ or top directory, nor on its PATH (%s)", script, pathEnv)
}

// scriptInRelease resolves a script named by a path (with a '/'), which
// must lead inside the release.
func scriptInRelease(release, script string) (string, fs.FileMode, error) {
	p := strings.TrimPrefix(script, "./")
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return "", 0, fmt.Errorf("script %q is refused: a path must lead inside the release, relative to its top (bin/NAME), without \"..\"; "+
			"a NAME without '/' is looked up in bin/, the top directory, then PATH", script)
	}
	real, fi, err := releaseFile(release, p, script)
	if err != nil {
		return "", 0, err
	}
	if fi == nil {
		return "", 0, fmt.Errorf("script %q is not in the release", script)
	}
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("script %q is not a file", script)
	}
	return real, fi.Mode(), nil
}

// scriptOnPath finds script on pathEnv's absolute directories.
func scriptOnPath(script, pathEnv string) (string, fs.FileMode, bool) {
	// The PATH: like a shell, files that cannot run are passed over. The
	// release's own directories were searched above.
	for _, dir := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, script)
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi.Mode()&0o111 != 0 || strings.HasSuffix(script, ".py") || strings.HasSuffix(script, ".php") {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				continue
			}
			return real, fi.Mode(), true
		}
	}
	return "", 0, false
}

// releaseFile resolves the release-relative p (a clean path) through its
// symlinks, which must stay inside the release. A nil FileInfo without an
// error: nothing is there.
func releaseFile(release, p, script string) (string, fs.FileInfo, error) {
	full := filepath.Join(release, p)
	if _, err := os.Lstat(full); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return "", nil, nil
		}
		return "", nil, fmt.Errorf("script %q: %w", script, err)
	}
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		return "", nil, fmt.Errorf("script %q: %s is a broken symlink", script, p)
	}
	if real != release && !strings.HasPrefix(real, release+"/") {
		return "", nil, fmt.Errorf("script %q is refused: %s leads outside the release", script, p)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", nil, fmt.Errorf("script %q: %w", script, err)
	}
	return real, fi, nil
}

// runAsApp runs argv (which drops to uid itself, or with cred) in dir with
// env and the given streams, and returns its exit code (see runScript).
func runAsApp(ctx context.Context, argv []string, cred *syscall.Credential, uid int, dir string, env []string,
	stdin io.Reader, stdout, stderr io.Writer, tty bool) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("not starting %s: %w", argv[0], context.Cause(ctx))
	}
	cmd := &exec.Cmd{Path: argv[0], Args: argv, Dir: dir, Env: env, Stdout: stdout, Stderr: stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	// A reader that is not a file goes through a pipe of ours: os/exec's
	// would make Wait wait for stdin's end, which may never come.
	var stdinPipe *os.File
	switch r := stdin.(type) {
	case nil:
	case *os.File:
		cmd.Stdin = r
	default:
		pr, pw, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		defer pr.Close()
		cmd.Stdin, stdinPipe = pr, pw
	}
	// Copies of stdout and stderr end when the script's processes are gone;
	// a descriptor passed away to another process must not hold Wait up.
	cmd.WaitDelay = 2 * time.Second

	var term *foreground
	if tty {
		term = takeTerminal()
		if term != nil {
			defer term.close()
			cmd.SysProcAttr.Foreground = true
			cmd.SysProcAttr.Ctty = int(term.tty.Fd())
		}
	}

	restoreReaper := becomeSubreaper()
	defer restoreReaper()

	if err := cmd.Start(); err != nil {
		if stdinPipe != nil {
			stdinPipe.Close()
		}
		if term != nil {
			term.restore()
		}
		return 0, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	pid := cmd.Process.Pid
	if stdinPipe != nil {
		cmd.Stdin.(*os.File).Close()
		go func() {
			io.Copy(stdinPipe, stdin)
			stdinPipe.Close()
		}()
	}

	g := &processGroup{pid: pid}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	g.stopOnCancel(ctx, stop, &wg)

	waitLeader(pid, func() { g.signal(syscall.SIGCONT) })
	if term != nil {
		term.restore()
	}
	g.leaderExited()
	close(stop)
	wg.Wait()
	killOrphans(uid, pid)
	if stdinPipe != nil {
		stdinPipe.Close()
	}

	return exitCode(cmd, argv[0])
}

// waitLeader returns once process pid has exited, without reaping it (so
// its pid and process group id stay taken). A stop is answered with
// cont(): no shell is there to resume the script.
func waitLeader(pid int, cont func()) {
	const pPID = 1       // idtype_t P_PID
	const cldStopped = 5 // si_code CLD_STOPPED
	for {
		var info [128]byte // siginfo_t
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&info[0])),
			syscall.WEXITED|syscall.WSTOPPED|syscall.WNOWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return // ECHILD: nothing to wait for
		}
		// si_signo, si_errno, si_code (int each; not MIPS's order).
		if code := *(*int32)(unsafe.Pointer(&info[8])); code == cldStopped {
			// Take the stop off the queue, then resume the script.
			var consume [128]byte
			syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&consume[0])),
				syscall.WSTOPPED|syscall.WNOHANG, 0, 0)
			cont()
			continue
		}
		return
	}
}

// becomeSubreaper makes this process the reaper of the orphans its
// children leave (prctl PR_SET_CHILD_SUBREAPER) and returns what puts the
// previous setting back.
func becomeSubreaper() func() {
	const prSetChildSubreaper, prGetChildSubreaper = 36, 37
	var was int32
	syscall.Syscall(syscall.SYS_PRCTL, prGetChildSubreaper, uintptr(unsafe.Pointer(&was)), 0)
	if was != 0 {
		return func() {}
	}
	if _, _, e := syscall.Syscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return func() {}
	}
	return func() { syscall.Syscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0) }
}

// killOrphans kills and reaps this process's children that run as uid
// (real uid) other than skip: what a script left behind, handed to us as
// its subreaper. Each reaped one hands us its own children in turn; the
// passes are bounded, for a script that forks without end.
func killOrphans(uid, skip int) {
	self := os.Getpid()
	for pass := 0; pass < 1000; pass++ {
		var orphans []int
		for _, pid := range childPIDs(self) {
			if pid != skip && procRealUID(pid) == uid {
				orphans = append(orphans, pid)
			}
		}
		if len(orphans) == 0 {
			return
		}
		for _, pid := range orphans {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range orphans {
			for {
				_, err := syscall.Wait4(pid, nil, 0, nil)
				if err != syscall.EINTR {
					break
				}
			}
		}
	}
}

// procRealUID is process pid's real uid from /proc (-1 if unknown).
func procRealUID(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if uid, err := strconv.Atoi(f[0]); err == nil {
					return uid
				}
			}
		}
	}
	return -1
}

// foreground is the agent's controlling terminal, handed to a script's
// process group while it runs.
type foreground struct {
	tty  *os.File
	pgrp int // the terminal's foreground process group before: the agent's
}

// takeTerminal opens the controlling terminal when the agent's process
// group is its foreground one; nil otherwise (no terminal, or the agent
// runs in the background: the script must not take the terminal then).
func takeTerminal() *foreground {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	var pgrp int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, tty.Fd(), syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp))); e != 0 || int(pgrp) != syscall.Getpgrp() {
		tty.Close()
		return nil
	}
	return &foreground{tty: tty, pgrp: int(pgrp)}
}

// restore gives the terminal back to the agent's process group. The agent
// is in the background until then, where changing the foreground group
// would stop it with SIGTTOU unless that is ignored.
func (f *foreground) restore() {
	wasIgnored := signal.Ignored(syscall.SIGTTOU)
	signal.Ignore(syscall.SIGTTOU)
	pgrp := int32(f.pgrp)
	syscall.Syscall(syscall.SYS_IOCTL, f.tty.Fd(), syscall.TIOCSPGRP, uintptr(unsafe.Pointer(&pgrp)))
	if !wasIgnored {
		signal.Reset(syscall.SIGTTOU)
	}
}

func (f *foreground) close() { f.tty.Close() }

// exitCode waits for cmd and returns its exit code (128+N: killed by
// signal N).
func exitCode(cmd *exec.Cmd, name string) (int, error) {
	err := cmd.Wait()
	if cmd.ProcessState == nil {
		return 0, fmt.Errorf("waiting for %s: %v", name, err)
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return 0, fmt.Errorf("waiting for %s: %v", name, err)
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// processGroup is a script's process group. It is signalled only while
// its leader is not reaped: until then, its id cannot belong to anyone
// else.
type processGroup struct {
	pid    int
	mu     sync.Mutex
	exited bool
}

func (g *processGroup) signal(sig syscall.Signal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.exited {
		syscall.Kill(-g.pid, sig)
	}
}

// leaderExited kills the rest of the group (the unreaped leader holds the
// id) and signals it no more.
func (g *processGroup) leaderExited() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.exited = true
	syscall.Kill(-g.pid, syscall.SIGKILL)
}

// stopOnCancel terminates the group once ctx ends (then kills it after
// runKillDelay), until stop is closed; wg is done when it returns.
func (g *processGroup) stopOnCancel(ctx context.Context, stop chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-stop:
			return
		}
		g.signal(syscall.SIGTERM)
		g.signal(syscall.SIGCONT) // a stopped process would never see it
		select {
		case <-stop:
		case <-time.After(runKillDelay):
			g.signal(syscall.SIGKILL)
		}
	}()
}
