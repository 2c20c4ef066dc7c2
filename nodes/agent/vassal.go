package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// A release runs as one uWSGI vassal: startRelease writes its file into
// Runtime.VassalsDir and rings the emperor, stopRelease removes it. Around
// the vassal, each instance directory holds (next to releases/ and current):
//
//	env       the app's environment, KEY=VALUE lines (0600, instance user)
//	secret    SILVER_SECRET_FILE: random hex, made once (0600, instance user)
//	tmp/      TEMP and TMPDIR, emptied at every start (0700, instance user)
//	run/      per release, made at its start and removed at its stop (root,
//	          group the instance's, 0750):
//	          vN.env      the env file as vN started with it (0600, instance user),
//	                      so a reload of an older release keeps its own values
//	          vN.wsgi.py  python: the WSGI file uWSGI loads (env, site dir, runner)
//	          vN.env.php  php: run before every request, puts the env in place
//
// Env values never pass through uWSGI's configuration: uWSGI expands '%',
// '$(VAR)' and '@(file)' in every option value (for-readline's lines
// included) and strips trailing blanks, with no way to escape '$(' or '@('.
// The vassal's bootstrap reads the env file itself and takes each line
// verbatim, so any one-line value arrives exactly.
const (
	envFileName    = "env"
	secretFileName = "secret"
	tmpDirName     = "tmp"
	runDirName     = "run"
	appLogName     = "app.log"
)

// Bounds of the vassal's life cycle.
const (
	stopTimeout    = 5 * time.Second        // stopRelease waits this long for the emperor, then kills
	logTailLines   = 20                     // lines of app.log shown when a start fails
	maxScriptLines = 2000                   // update_fetch script output lines copied to out
	maxLineBytes   = 2000                   // longer output lines are cut
	pollInterval   = 100 * time.Millisecond // watching app.log and the emperor during a start
)

// Interpreters for update_fetch scripts named .py and .php.
var (
	python3Path = "/usr/bin/python3"
	phpPath     = "/usr/bin/php"
)

// startRelease starts release n of APP/INSTANCE, whose files are already at
// rt.releaseDir(app, instance, n), and returns once it is healthy and its
// update_fetch ran, or with an error after stopping it. Progress lines go
// to out; on failure the relevant tail of the app's log goes to out too,
// and the error is one sentence naming the cause. Starting a release that
// runs already (a retry) stops it first.
func (ri runtimeInstance) startRelease(ctx context.Context, n int, spec Spec, out io.Writer) error {
	rt, app, instance := ri.rt, ri.app, ri.name
	if out == nil {
		out = io.Discard
	}
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("the release's spec is invalid: %w", err)
	}
	if err := checkNames(app, instance, n); err != nil {
		return err
	}
	rel := ri.releaseDir(n)
	if fi, err := os.Stat(rel); err != nil || !fi.IsDir() {
		return fmt.Errorf("release v%d of %s/%s is not on this node (%s); receive it first", n, app, instance, rel)
	}
	if err := checkReleaseFiles(rel, spec); err != nil {
		return err
	}
	t, err := ri.instanceUser(true)
	if err != nil {
		return err
	}
	if err := ri.ensureInstanceCgroup(spec); err != nil {
		return err
	}
	// A retry starts from nothing: rewriting a running vassal's file only
	// makes the emperor reload it, which keeps its socket and its past.
	if err := ri.stopRelease(ctx, n); err != nil {
		return fmt.Errorf("stopping the earlier start of v%d: %w", n, err)
	}
	files, err := ri.prepareInstance(n, spec, t)
	if err != nil {
		return err
	}
	ini, err := vassalINI(files.vassal)
	if err != nil {
		return err
	}
	logFile := ri.uwsgiLogPath()
	w := &startWatch{rt: rt, vassalID: filepath.Base(ri.vassalPath(n)), logFile: logFile, prefix: vassalLogPrefix(n)}
	w.offset = fileSize(logFile)

	killsBefore := ri.memoryKills()
	err = ri.startAndCheck(ctx, n, spec, files, ini, w, out)
	if err == nil {
		return nil
	}
	if kills := ri.memoryKills(); kills != killsBefore {
		fmt.Fprintln(out, kills)
	}
	// The caller's context may be what ended the start: stopping must not
	// depend on it.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout+2*time.Second)
	defer cancel()
	if stopErr := ri.stopRelease(stopCtx, n); stopErr != nil {
		fmt.Fprintf(out, "stopping v%d after the failure: %v\n", n, stopErr)
	}
	return err
}

// checkReleaseFiles says early, and in app.ini's words, what uWSGI would
// only say in its log: the runner or php_root is not in the release.
func checkReleaseFiles(rel string, spec Spec) error {
	if fi, err := os.Stat(filepath.Join(rel, spec.Runner)); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("runner %s is not a file in the release; fix app.ini's runner", spec.Runner)
	}
	if spec.Platform == "php" && spec.PHPRoot != "" {
		if fi, err := os.Stat(filepath.Join(rel, spec.PHPRoot)); err != nil || !fi.IsDir() {
			return fmt.Errorf("php_root %s is not a directory in the release; fix app.ini's php_root", spec.PHPRoot)
		}
	}
	return nil
}

// startAndCheck writes the vassal, waits for its socket and a healthy
// answer, then runs update_fetch.
func (ri runtimeInstance) startAndCheck(ctx context.Context, n int, spec Spec, files instanceFiles,
	ini string, w *startWatch, out io.Writer) error {
	rt := ri.rt
	vassal := ri.vassalPath(n)
	if err := atomicfile.Write(vassal, []byte(ini), 0o644); err != nil {
		return fmt.Errorf("the vassal file: %w", err)
	}
	started := time.Now()
	// This connection also rings the emperor. Without one, nothing would
	// ever start the vassal: say so now rather than after the timeout.
	if _, err := emperorVassals(ctx, rt.EmperorStats); errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("the uWSGI emperor is not running (nothing answers on %s); run `gitreceive nodes setup` for this node", rt.EmperorStats)
	}

	timeout := spec.healthTimeout()
	hctx, cancel := context.WithTimeoutCause(ctx, timeout, errHealthTimeout)
	defer cancel()
	// The watcher ends the health check early when the app cannot load.
	wctx, fail := context.WithCancelCause(hctx)
	defer fail(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.run(wctx, fail)
	}()
	err := healthCheck(wctx, ri.socketPath(n), spec, timeout, started, out)
	fail(nil)
	wg.Wait()
	if err != nil {
		if cause := context.Cause(wctx); errors.As(cause, new(*appFailure)) {
			err = cause
		}
		w.printTail(out)
		return err
	}

	env, err := readEnvFile(files.envSnapshot)
	if err != nil {
		return err
	}
	for _, step := range spec.UpdateFetch {
		if err := ri.updateFetch(ctx, n, spec, files, step, env, out); err != nil {
			w.printTail(out)
			return err
		}
	}
	return nil
}

// stopRelease removes release n's vassal file, so the emperor stops it, and
// waits (at most a few seconds) for it to go; its socket and its run/ files
// are removed too. No error if it was not running.
func (ri runtimeInstance) stopRelease(ctx context.Context, n int) error {
	rt, app, instance := ri.rt, ri.app, ri.name
	if err := checkNames(app, instance, n); err != nil {
		return err
	}
	vassal := ri.vassalPath(n)
	id := filepath.Base(vassal)
	socket := ri.socketPath(n)
	err := os.Remove(vassal)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the vassal file %s: %w", vassal, err)
	}
	ringEmperor(ctx, rt.EmperorStats)

	deadline := time.Now().Add(stopTimeout)
	killed := false
	for {
		pid, running := vassalRunning(ctx, rt, id, socket)
		if !running {
			break
		}
		if time.Now().After(deadline) {
			if killed || pid == 0 {
				return fmt.Errorf("v%d of %s/%s is still running %s after its vassal file was removed; see %s", n, app, instance, stopTimeout, emperorLog(rt))
			}
			// The emperor asked it to stop and it did not: end it.
			ri.killVassal(pid)
			killed = true
			deadline = time.Now().Add(2 * time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for v%d of %s/%s to stop: %w", n, app, instance, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
	// uWSGI's vacuum removes the socket on a clean exit, not after a kill.
	if err := os.Remove(socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the socket %s: %w", socket, err)
	}
	runDir := filepath.Join(ri.dir(), runDirName)
	for _, suffix := range []string{".env", ".wsgi.py", ".env.php"} {
		p := filepath.Join(runDir, "v"+strconv.Itoa(n)+suffix)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	return nil
}

// mayRun reports whether release n may have a running vassal: its vassal
// file or its socket is there.
func (ri runtimeInstance) mayRun(n int) bool {
	for _, p := range []string{ri.vassalPath(n), ri.socketPath(n)} {
		if _, err := os.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

// vassalRunning says whether the emperor still lists the vassal (with its
// pid) or, without an emperor to ask, whether its socket still answers.
func vassalRunning(ctx context.Context, rt Runtime, id, socket string) (pid int, running bool) {
	vs, err := emperorVassals(ctx, rt.EmperorStats)
	if err == nil {
		for _, v := range vs {
			if v.ID == id {
				return v.PID, true
			}
		}
	}
	if _, err := os.Lstat(socket); err != nil {
		return 0, false
	}
	d := net.Dialer{Timeout: 200 * time.Millisecond}
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, false
	}
	conn.Close()
	return 0, true
}

// killVassal SIGKILLs a vassal's master and its workers, those of them
// that run as the instance's user or the shared user of earlier versions
// (a reused pid must never be root's or another instance's). It is the
// last resort: uWSGI ignores the emperor's stop while it respawns a worker
// (seen right after a harakiri).
func (ri runtimeInstance) killVassal(master int) {
	uids := map[int]bool{}
	if t, err := ri.instanceUser(false); err == nil {
		uids[t.uid] = true
	}
	if t, err := lookupUser(legacyAppUser); err == nil {
		uids[t.uid] = true
	}
	asApp := func(pid int) bool {
		var st syscall.Stat_t
		return syscall.Stat("/proc/"+strconv.Itoa(pid), &st) == nil && uids[int(st.Uid)]
	}
	if !asApp(master) {
		return
	}
	// Workers first, so none is left to the init process.
	for _, pid := range childPIDs(master) {
		if asApp(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	syscall.Kill(master, syscall.SIGKILL)
}

// childPIDs lists parent's children from /proc/PID/stat.
func childPIDs(parent int) []int {
	return procPIDs(func(pid int) bool {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return false
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		return len(fields) > 1 && fields[1] == strconv.Itoa(parent)
	})
}

// procPIDs lists the processes in /proc that match.
func procPIDs(match func(pid int) bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && match(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// demoteRelease rewrites release n's vassal as a cheap one: no workers
// until a request comes, back to none after demoteIdle seconds without
// requests, one worker at most. That is the previous release, kept
// reachable at prev.HOST. The emperor reloads the vassal gracefully: its
// socket stays, requests wait for the reload. No error if it is not
// running.
func (ri runtimeInstance) demoteRelease(ctx context.Context, n int) error {
	rt, app, instance := ri.rt, ri.app, ri.name
	if err := checkNames(app, instance, n); err != nil {
		return err
	}
	vassal := ri.vassalPath(n)
	data, err := os.ReadFile(vassal)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the vassal file %s: %w", vassal, err)
	}
	text := string(data)
	if strings.Contains(text, demoteMarker) {
		return nil
	}
	before, err := os.Stat(vassal)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(vassal, []byte(text+demoteBlock), 0o644); err != nil {
		return fmt.Errorf("the vassal file: %w", err)
	}
	// The emperor notices a changed vassal by its mtime in whole seconds:
	// a demote within the second the vassal was written would go unseen.
	if now := time.Now(); now.Unix() <= before.ModTime().Unix() {
		later := before.ModTime().Truncate(time.Second).Add(time.Second)
		if err := os.Chtimes(vassal, later, later); err != nil {
			return fmt.Errorf("touching the vassal file %s: %w", vassal, err)
		}
	}
	ringEmperor(ctx, rt.EmperorStats)
	return nil
}

// demoteIdle is how long a demoted release keeps its worker after a request.
const demoteIdle = 300

const demoteMarker = "; demoted:"

// Later values of an option win in uWSGI's ini files, so the block only
// needs appending.
var demoteBlock = demoteMarker + ` the previous release, reachable at prev.HOST: no worker until a
; request comes, none again after ` + strconv.Itoa(demoteIdle) + ` s without one.
cheap = true
idle = ` + strconv.Itoa(demoteIdle) + `
processes = 1
`
