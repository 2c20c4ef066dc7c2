package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agent/pysupport"
)

// A release runs as one uWSGI vassal: StartRelease writes its file into
// Runtime.VassalsDir and rings the emperor, StopRelease removes it. Around
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
	stopTimeout    = 5 * time.Second        // StopRelease waits this long for the emperor, then kills
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

// StartRelease starts release n of APP/INSTANCE, whose files are already at
// rt.ReleaseDir(app, instance, n), and returns once it is healthy and its
// update_fetch ran, or with an error after stopping it. Progress lines go
// to out; on failure the relevant tail of the app's log goes to out too,
// and the error is one sentence naming the cause. Starting a release that
// runs already (a retry) stops it first.
func StartRelease(ctx context.Context, rt Runtime, app, instance string, n int, spec Spec, out io.Writer) error {
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
	rel := rt.ReleaseDir(app, instance, n)
	if fi, err := os.Stat(rel); err != nil || !fi.IsDir() {
		return fmt.Errorf("release v%d of %s/%s is not on this node (%s); receive it first", n, app, instance, rel)
	}
	if err := checkReleaseFiles(rel, spec); err != nil {
		return err
	}
	t, err := instanceUser(rt, app, instance, true)
	if err != nil {
		return err
	}
	if err := ensureInstanceCgroup(rt, app, instance, spec); err != nil {
		return err
	}
	// A retry starts from nothing: rewriting a running vassal's file only
	// makes the emperor reload it, which keeps its socket and its past.
	if err := StopRelease(ctx, rt, app, instance, n); err != nil {
		return fmt.Errorf("stopping the earlier start of v%d: %w", n, err)
	}
	files, err := prepareInstance(rt, app, instance, n, spec, t)
	if err != nil {
		return err
	}
	ini, err := vassalINI(files.vassal)
	if err != nil {
		return err
	}
	logFile := uwsgiLogPath(rt, app, instance)
	w := &startWatch{rt: rt, vassalID: filepath.Base(rt.VassalPath(app, instance, n)), logFile: logFile, prefix: vassalLogPrefix(n)}
	w.offset = fileSize(logFile)

	killsBefore := memoryKills(rt, app, instance)
	err = startAndCheck(ctx, rt, app, instance, n, spec, files, ini, w, out)
	if err == nil {
		return nil
	}
	if kills := memoryKills(rt, app, instance); kills != killsBefore {
		fmt.Fprintln(out, kills)
	}
	// The caller's context may be what ended the start: stopping must not
	// depend on it.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout+2*time.Second)
	defer cancel()
	if stopErr := StopRelease(stopCtx, rt, app, instance, n); stopErr != nil {
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
func startAndCheck(ctx context.Context, rt Runtime, app, instance string, n int, spec Spec, files instanceFiles,
	ini string, w *startWatch, out io.Writer) error {
	vassal := rt.VassalPath(app, instance, n)
	if err := atomicfile.Write(vassal, []byte(ini), 0o644); err != nil {
		return fmt.Errorf("the vassal file: %w", err)
	}
	started := time.Now()
	// This connection also rings the emperor. Without one, nothing would
	// ever start the vassal: say so now rather than after the timeout.
	if _, err := emperorVassals(ctx, rt.EmperorStats); errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("the uWSGI emperor is not running (nothing answers on %s); run `gitreceive nodes setup` for this node", rt.EmperorStats)
	}

	timeout := spec.HealthTimeout()
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
	err := healthCheck(wctx, rt.SocketPath(app, instance, n), spec, timeout, started, out)
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
		if err := updateFetch(ctx, rt, app, instance, n, spec, files, step, env, out); err != nil {
			w.printTail(out)
			return err
		}
	}
	return nil
}

var errHealthTimeout = errors.New("health check timed out")

// appFailure is the watcher's verdict: the app cannot run.
type appFailure struct{ cause string }

func (e *appFailure) Error() string { return "the app did not start: " + e.cause }

// healthCheck asks spec.HealthCheck through the socket until a status below
// 500 or the context ends (timeout or the watcher's verdict).
func healthCheck(ctx context.Context, socket string, spec Spec, timeout time.Duration, started time.Time, out io.Writer) error {
	loc := spec.Locations[0]
	backoff := 20 * time.Millisecond
	var lastStatus int
	var lastBody []byte
	var lastErr error
	socketSeen := false
	var refusedSince time.Time
	for {
		if !socketSeen {
			if _, err := os.Stat(socket); err == nil {
				socketSeen = true
				fmt.Fprintf(out, "vassal listening on %s (%.2fs)\n", filepath.Base(socket), time.Since(started).Seconds())
			}
		}
		if socketSeen {
			status, body, err := UwsgiGet(ctx, socket, loc.Host, loc.Path, spec.HealthCheck)
			switch {
			case err == nil && status < 500:
				fmt.Fprintf(out, "health check GET %s -> %d (%.2fs)\n", spec.HealthCheck, status, time.Since(started).Seconds())
				return nil
			case err == nil:
				lastStatus, lastBody, lastErr = status, body, nil
			default:
				lastErr = err
			}
			// A master listens from its bind to its exit (a reload keeps the
			// socket): one refusing for a second has died, whether or not
			// the emperor has noticed yet (it throttles quick respawns).
			switch {
			case !errors.Is(err, syscall.ECONNREFUSED):
				refusedSince = time.Time{}
			case refusedSince.IsZero():
				refusedSince = time.Now()
			case time.Since(refusedSince) > time.Second:
				return &appFailure{cause: "it exited; nothing listens on its socket any more"}
			}
		}
		select {
		case <-ctx.Done():
			if lastErr == nil && lastStatus != 0 {
				printAnswer(out, spec.HealthCheck, lastStatus, lastBody)
			}
			return healthError(ctx, spec, timeout, socket, socketSeen, lastStatus, lastErr)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// answerLines bounds how much of a failing health check's answer is shown.
const answerLines = 15

// printAnswer shows the start of the last answer a failing health check
// got: an app's error page often says why (a PHP error, a framework's
// message), where the log holds only request lines.
func printAnswer(out io.Writer, path string, status int, body []byte) {
	text := strings.TrimSpace(string(body))
	if text == "" {
		fmt.Fprintf(out, "the last answer to GET %s: %d with an empty body\n", path, status)
		return
	}
	lines := strings.Split(text, "\n")
	fmt.Fprintf(out, "the last answer to GET %s: %d, beginning:\n", path, status)
	for i, l := range lines {
		if i == answerLines {
			fmt.Fprintf(out, "  ... (%d more lines)\n", len(lines)-answerLines)
			break
		}
		if l = strings.TrimRight(l, "\r"); len(l) > maxLineBytes {
			l = l[:maxLineBytes] + "..."
		}
		fmt.Fprintf(out, "  %s\n", l)
	}
}

func healthError(ctx context.Context, spec Spec, timeout time.Duration, socket string, socketSeen bool, lastStatus int, lastErr error) error {
	cause := context.Cause(ctx)
	if errors.As(cause, new(*appFailure)) {
		return cause
	}
	if !errors.Is(cause, errHealthTimeout) {
		return fmt.Errorf("the start was interrupted: %w", cause)
	}
	switch {
	case !socketSeen:
		return fmt.Errorf("the app's socket %s did not appear within %s", socket, timeout)
	case lastErr == nil && lastStatus != 0:
		return fmt.Errorf("health check GET %s answered %d for %s", spec.HealthCheck, lastStatus, timeout)
	default:
		return fmt.Errorf("health check GET %s got no answer within %s (%v)", spec.HealthCheck, timeout, lastErr)
	}
}

// startWatch follows a starting vassal: its lines in app.log and what the
// emperor says of it.
type startWatch struct {
	rt       Runtime
	vassalID string
	logFile  string
	offset   int64  // app.log's size before the start: later bytes are this start's
	prefix   string // what uWSGI puts before this release's own lines (vassalLogPrefix)

	mu    sync.Mutex
	lines []string // this start's lines of app.log so far (the last logTailLines*4)
	upTo  int      // when > 0, the tail to show ends here (the failure's line)
}

// failureMarkers are uWSGI's words for an app that cannot load. With
// need-app the vassal exits right after; the emperor would respawn it for
// ever, so the start fails at once.
var failureMarkers = []string{
	"no app loaded. GAME OVER",
	"unable to load app",
	"no python application found",
	"!!! UNABLE to load uWSGI plugin",
}

func (w *startWatch) run(ctx context.Context, fail context.CancelCauseFunc) {
	var partial []byte
	pos := w.offset
	firstPID, respawns := 0, -1
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		data, next := readLogFrom(w.logFile, pos)
		pos = next
		if len(data) > 0 {
			partial = append(partial, data...)
			complete := bytes.LastIndexByte(partial, '\n')
			if complete >= 0 {
				newLines := strings.Split(string(partial[:complete]), "\n")
				partial = slices.Clone(partial[complete+1:])
				if cause, ok := w.addLines(newLines); ok {
					fail(&appFailure{cause: cause})
					return
				}
			}
		}
		// A vassal that dies before logging (a bad option, a missing
		// directory) shows only in the emperor's respawns.
		if vs, err := emperorVassals(ctx, w.rt.EmperorStats); err == nil {
			for _, v := range vs {
				if v.ID != w.vassalID {
					continue
				}
				if respawns < 0 {
					firstPID, respawns = v.PID, v.Respawns
				} else if v.Respawns > respawns || (v.PID != firstPID && v.PID != 0 && firstPID != 0) {
					// It wrote its last words before it exited: read them
					// all before judging, or the traceback is cut where the
					// last read happened to stop, its exception unseen.
					data, _ := readLogFrom(w.logFile, pos)
					if rest := strings.TrimRight(string(append(partial, data...)), "\n"); rest != "" {
						if cause, ok := w.addLines(strings.Split(rest, "\n")); ok {
							fail(&appFailure{cause: cause})
							return
						}
					}
					fail(&appFailure{cause: "it exited; " + w.lastLine("see "+emperorLog(w.rt))})
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// addLines records new log lines and reports a failure marker's cause.
// The instance's other vassals (the live release, prev.HOST's) log to the
// same app.log: only a marker this release's uWSGI wrote counts.
func (w *startWatch) addLines(lines []string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, raw := range lines {
		own := w.prefix == "" || strings.HasPrefix(raw, w.prefix)
		l := vassalLogLinePrefix.ReplaceAllString(strings.TrimRight(raw, "\r"), "")
		w.lines = append(w.lines, l)
		if len(w.lines) > 4*logTailLines {
			w.lines = slices.Delete(w.lines, 0, len(w.lines)-4*logTailLines)
		}
		for _, m := range failureMarkers {
			if own && strings.Contains(l, m) {
				w.upTo = len(w.lines)
				return failureCause(w.lines), true
			}
		}
	}
	return "", false
}

// vassalLogPrefix is what uWSGI puts before each line release n's vassal
// logs itself (log-prefix, then uWSGI's " - "); the app's own stderr
// reaches app.log unprefixed.
func vassalLogPrefix(n int) string { return "[v" + strconv.Itoa(n) + "] - " }

var vassalLogLinePrefix = regexp.MustCompile(`^\[v[0-9]+\] - `)

// failureCause picks the line that says why: the exception of the last
// Python traceback, else the last line before uWSGI's own verdict.
func failureCause(lines []string) string {
	tb := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "Traceback (most recent call last)") {
			tb = i
		}
	}
	if tb >= 0 {
		cause := ""
		for _, l := range lines[tb+1:] {
			if l != "" && !strings.HasPrefix(l, " ") && !isMarker(l) {
				cause = l
			}
			if isMarker(l) {
				break
			}
		}
		if cause != "" {
			return cause
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !isMarker(l) && !isShutdownNoise(l) {
			return l
		}
	}
	if len(lines) > 0 {
		return lines[len(lines)-1]
	}
	return "no log line"
}

// shutdownNoise starts the lines uWSGI logs on its way out, after the
// line that says why.
var shutdownNoise = []string{"VACUUM", "goodbye to uWSGI", "SIGINT/SIGTERM received", "worker ", "announcing my loyalty", "[pid: "}

func isShutdownNoise(l string) bool {
	for _, p := range shutdownNoise {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

func isMarker(l string) bool {
	for _, m := range failureMarkers {
		if strings.Contains(l, m) {
			return true
		}
	}
	return false
}

func (w *startWatch) lastLine(fallback string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lines) == 0 {
		return fallback
	}
	return "last log line: " + failureCause(w.lines)
}

// printTail shows this start's last lines of app.log (up to the failure's
// line when there was one), reading what the watcher has not read yet.
func (w *startWatch) printTail(out io.Writer) {
	w.mu.Lock()
	lines := slices.Clone(w.lines)
	upTo := w.upTo
	w.mu.Unlock()
	if upTo == 0 {
		if data, _ := readLogFrom(w.logFile, w.offset); len(data) > 0 {
			lines = strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		}
	} else {
		lines = lines[:upTo]
	}
	if len(lines) == 0 {
		fmt.Fprintf(out, "%s has nothing from this start; see %s\n", w.logFile, emperorLog(w.rt))
		return
	}
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	fmt.Fprintf(out, "last lines of %s:\n", w.logFile)
	for _, l := range lines {
		if len(l) > maxLineBytes {
			l = l[:maxLineBytes] + "..."
		}
		fmt.Fprintf(out, "  %s\n", l)
	}
}

// emperorLog is where the emperor and what a vassal prints before its own
// log is open end up (server-files' emperor.ini: next to the apps' logs).
func emperorLog(rt Runtime) string { return filepath.Join(filepath.Dir(rt.LogsDir), "emperor.log") }

// readLogFrom reads the log from offset on (at most 1 MB) and returns the
// next offset. The log lies in a directory the app may write: it is opened
// without following symlinks and must be a regular file, so an app cannot
// make the agent (root) show it some other file. A log that shrank (was
// rotated) is read from its start.
func readLogFrom(path string, offset int64) ([]byte, int64) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, offset
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, offset
	}
	if fi.Size() < offset {
		offset = 0
	}
	const maxRead = 1 << 20
	start := offset
	if fi.Size()-start > maxRead {
		start = fi.Size() - maxRead
	}
	data := make([]byte, fi.Size()-start)
	n, _ := f.ReadAt(data, start)
	return data[:n], start + int64(n)
}

func fileSize(path string) int64 {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return 0
	}
	return fi.Size()
}

// StopRelease removes release n's vassal file, so the emperor stops it, and
// waits (at most a few seconds) for it to go; its socket and its run/ files
// are removed too. No error if it was not running.
func StopRelease(ctx context.Context, rt Runtime, app, instance string, n int) error {
	if err := checkNames(app, instance, n); err != nil {
		return err
	}
	vassal := rt.VassalPath(app, instance, n)
	id := filepath.Base(vassal)
	socket := rt.SocketPath(app, instance, n)
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
			killVassal(rt, app, instance, pid)
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
	runDir := filepath.Join(rt.InstanceDir(app, instance), runDirName)
	for _, suffix := range []string{".env", ".wsgi.py", ".env.php"} {
		p := filepath.Join(runDir, "v"+strconv.Itoa(n)+suffix)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	return nil
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
func killVassal(rt Runtime, app, instance string, master int) {
	uids := map[int]bool{}
	if t, err := instanceUser(rt, app, instance, false); err == nil {
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

// DemoteRelease rewrites release n's vassal as a cheap one: no workers
// until a request comes, back to none after demoteIdle seconds without
// requests, one worker at most. That is the previous release, kept
// reachable at prev.HOST. The emperor reloads the vassal gracefully: its
// socket stays, requests wait for the reload. No error if it is not
// running.
func DemoteRelease(ctx context.Context, rt Runtime, app, instance string, n int) error {
	if err := checkNames(app, instance, n); err != nil {
		return err
	}
	vassal := rt.VassalPath(app, instance, n)
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

// --- instance files -----------------------------------------------------------

// legacyAppUser is the one user every app ran as before instances had
// their own (DESIGN.md decision 9). Vassals of it may still run on a node
// until their instance is deployed again.
const legacyAppUser = "gitreceive-app"

func checkNames(app, instance string, n int) error {
	if !names.IsApp(app) || !names.IsInstance(instance) {
		return fmt.Errorf("invalid app %q or instance %q", app, instance)
	}
	if n < 1 {
		return fmt.Errorf("invalid release number %d", n)
	}
	return nil
}

// instanceFiles is what prepareInstance made for one start.
type instanceFiles struct {
	envSnapshot string // run/vN.env
	vassal      vassalConfig
}

// prepareInstance closes the instance's directories to everyone but its
// user, its group and root, and writes the env file, the secret (once),
// TEMP, the logs directory and run/vN.*, and returns the vassal's
// configuration. The modes (DESIGN.md decision 9):
//
//	AppsDir/APP, LogsDir/APP             root 0711: nobody lists instances
//	AppsDir/APP/INSTANCE                 root:INSTANCE 0750: the instance's
//	  releases/, releases/vN, run/       user and nginx (in its group) only
//	                                     (releases root's: read-only to the app)
//	env, secret, run/vN.env              INSTANCE 0600
//	tmp/, LogsDir/APP/INSTANCE           INSTANCE 0700
//
// An instance that ran as the shared user of earlier versions is moved
// over here: what it owns in its log directory is given to its own user.
func prepareInstance(rt Runtime, app, instance string, n int, spec Spec, t tenant) (instanceFiles, error) {
	dir := rt.InstanceDir(app, instance)
	rel := rt.ReleaseDir(app, instance, n)
	logs := rt.InstanceLogsDir(app, instance)
	secret := filepath.Join(dir, secretFileName)
	tmp := filepath.Join(dir, tmpDirName)
	run := filepath.Join(dir, runDirName)

	// While a vassal of the shared user of earlier versions still serves
	// the instance, it must keep reaching its release until the switch:
	// the instance's directories stay traversable (not listable) by
	// others until tidy stops it (closeInstanceDirs).
	closed := fs.FileMode(0o750)
	if len(legacyVassals(rt, app, instance, t)) > 0 {
		closed = 0o751
	}
	nginxGID, err := lookupGroupID(rt.NginxGroup)
	if err != nil {
		return instanceFiles{}, err
	}
	for _, d := range []struct {
		path string
		gid  int
		mode fs.FileMode
	}{
		{rt.AppsDir, 0, 0o711},
		{filepath.Dir(dir), 0, 0o711},
		{filepath.Dir(logs), 0, 0o711},
		{dir, t.gid, closed},
		{filepath.Join(dir, "releases"), t.gid, closed},
		{rel, t.gid, 0o750},
		{run, t.gid, closed},
		{filepath.Dir(rt.InstanceNginxLogsDir(app, instance)), 0, 0o711},
		// nginx (root) writes the instance's access and error logs here;
		// the instance may read them (`logs` tails them as its user).
		{rt.InstanceNginxLogsDir(app, instance), t.gid, 0o750},
		// Nodes set up by earlier versions let the shared app user write
		// here; no app may rename or replace a socket.
		{rt.SocketsDir, nginxGID, 0o750},
	} {
		if err := ensureRootDir(d.path, d.gid, d.mode); err != nil {
			return instanceFiles{}, err
		}
	}
	if err := ensureAppDir(logs, 0o700, t); err != nil {
		return instanceFiles{}, fmt.Errorf("the instance's log directory: %w", err)
	}
	if err := reownEntries(logs, t); err != nil {
		return instanceFiles{}, fmt.Errorf("the instance's log directory: %w", err)
	}
	if err := writeLogrotate(rt, app, instance, t); err != nil {
		return instanceFiles{}, err
	}
	if err := ensureUwsgiLog(rt, app, instance, t); err != nil {
		return instanceFiles{}, err
	}
	if err := ensureSecret(secret, spec.Secret, t); err != nil {
		return instanceFiles{}, fmt.Errorf("the instance's secret %s: %w", secret, err)
	}
	if err := resetTempDir(tmp, t); err != nil {
		return instanceFiles{}, fmt.Errorf("the instance's TEMP %s: %w", tmp, err)
	}

	env := map[string]string{}
	for k, v := range spec.Env {
		env[k] = v
	}
	// Paths on this node: the agent's values win over the receiver's.
	env["TEMP"] = tmp
	env["TMPDIR"] = tmp
	env["SILVER_LOGS"] = logs
	env["SILVER_SECRET_FILE"] = secret
	env["PATH"] = filepath.Join(rel, "bin") + ":/usr/local/bin:/usr/bin:/bin"
	if rt.PythonDir != "" {
		// Every Python process of the app, whatever starts it, sees the
		// release (lib/python, silvercustomize) and silversupport.
		if err := pysupport.Install(rt.PythonDir); err != nil {
			return instanceFiles{}, err
		}
		env["PYTHONPATH"] = rt.PythonDir
		env[pysupport.AppDirEnv] = rel
	}
	envData, err := formatEnvFile(env)
	if err != nil {
		return instanceFiles{}, err
	}
	if err := atomicfile.WriteOwned(filepath.Join(dir, envFileName), envData, 0o600, t.uid, t.gid); err != nil {
		return instanceFiles{}, fmt.Errorf("the env file: %w", err)
	}
	prefix := filepath.Join(run, "v"+strconv.Itoa(n))
	snapshot := prefix + ".env"
	if err := atomicfile.WriteOwned(snapshot, envData, 0o600, t.uid, t.gid); err != nil {
		return instanceFiles{}, err // names the file
	}

	// PHP compares real paths with the allowed document root.
	realRel, err := filepath.EvalSymlinks(rel)
	if err != nil {
		return instanceFiles{}, err
	}
	c := vassalConfig{
		App: app, Instance: instance, N: n, Spec: spec,
		ReleaseDir: realRel,
		Socket:     rt.SocketPath(app, instance, n),
		LogFile:    uwsgiLogPath(rt, app, instance),
		UID:        t.uid, GID: t.gid, NginxGID: nginxGID,
		Cgroup:    rt.CgroupRoot != "",
		PythonDir: rt.PythonDir,
	}
	var boot []byte
	switch spec.Platform {
	case "python":
		c.Bootstrap = prefix + ".wsgi.py"
		boot, err = pythonBootstrap(c, snapshot)
	case "php":
		c.Bootstrap = prefix + ".env.php"
		boot, err = phpBootstrap(c, snapshot)
	}
	if err != nil {
		return instanceFiles{}, err
	}
	if err := atomicfile.WriteOwned(c.Bootstrap, boot, 0o640, atomicfile.KeepOwner, t.gid); err != nil {
		return instanceFiles{}, err // names the file
	}
	return instanceFiles{envSnapshot: snapshot, vassal: c}, nil
}

// legacyVassals lists the releases of the instance whose vassal runs as
// another user than t: the shared user of earlier versions.
func legacyVassals(rt Runtime, app, instance string, t tenant) []int {
	if _, err := lookupUser(legacyAppUser); err != nil {
		return nil // a node set up since has no such user, so no such vassal
	}
	var ns []int
	for _, n := range instanceVassals(context.Background(), rt, app, instance) {
		if uid, ok := vassalUID(rt.VassalPath(app, instance, n)); ok && uid != t.uid {
			ns = append(ns, n)
		}
	}
	return ns
}

// vassalUID is the uid a vassal file runs as.
func vassalUID(path string) (int, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "uid = "); ok {
			if uid, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return uid, true
			}
			// Earlier versions named the user.
			if u, err := lookupUser(strings.TrimSpace(v)); err == nil {
				return u.uid, true
			}
		}
	}
	return 0, false
}

// closeInstanceDirs takes the others' bit off the instance's directories
// once no vassal of the shared user is left (see prepareInstance).
func closeInstanceDirs(rt Runtime, app, instance string, t tenant) error {
	dir := rt.InstanceDir(app, instance)
	for _, p := range []string{dir, filepath.Join(dir, "releases"), filepath.Join(dir, runDirName)} {
		if err := ensureRootDir(p, t.gid, 0o750); err != nil {
			return err
		}
	}
	return nil
}

// ensureRootDir makes dir root's, with group gid and mode. Its parents
// are root's too (the app can rename nothing on the way).
func ensureRootDir(dir string, gid int, mode fs.FileMode) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.Lchown(dir, 0, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// reownEntries gives dir's direct entries that another user owns (the
// shared app user of earlier versions) to t. dir is the instance's own:
// the entries are changed through a descriptor of it, never following a
// symlink.
func reownEntries(dir string, t tenant) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != t.uid || int(st.Gid) != t.gid) {
			if err := root.Lchown(e.Name(), t.uid, t.gid); err != nil {
				return err
			}
		}
	}
	return nil
}

var logrotateSafe = regexp.MustCompile(`^/[A-Za-z0-9._/+@-]+$`)

// uwsgiLogPath is the log every vassal of the instance writes (uWSGI's
// app.log), beside nginx's access and error logs of the instance, in a
// directory only root may write: uWSGI opens it as root (chown-socket makes
// it set up logging before dropping privileges), and root must never open a
// path in a directory the app can write, where a symlink would lead it
// anywhere. SILVER_LOGS stays the app's own.
func uwsgiLogPath(rt Runtime, app, instance string) string {
	return filepath.Join(rt.InstanceNginxLogsDir(app, instance), appLogName)
}

// ensureUwsgiLog makes the instance's uWSGI log root's, group the
// instance's, 0660: the vassal keeps writing it after dropping privileges
// and reopens it on a reload; the app can read and truncate it, not
// replace it.
func ensureUwsgiLog(rt Runtime, app, instance string, t tenant) error {
	p := uwsgiLogPath(rt, app, instance)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o660)
	if err != nil {
		return fmt.Errorf("the instance's log %s: %w", p, err)
	}
	defer f.Close()
	if err := f.Chown(0, t.gid); err != nil {
		return err
	}
	return f.Chmod(0o660)
}

// logrotateName is the instance's file in rt.LogrotateDir.
func logrotateName(app, instance string) string { return "gitreceive-app-" + InstanceID(app, instance) }

// writeLogrotate rotates what the app writes in SILVER_LOGS, as the
// instance's user: as root, a symlink the app put in its own directory
// could make logrotate copy or truncate any file. uWSGI's app.log lies with
// nginx's logs of the instance, rotated as root by server-files' file.
func writeLogrotate(rt Runtime, app, instance string, t tenant) error {
	if rt.LogrotateDir == "" {
		return nil
	}
	logs := rt.InstanceLogsDir(app, instance)
	if !logrotateSafe.MatchString(logs) {
		// A name logrotate would read as a glob or split: uWSGI's own cap
		// on app.log still holds.
		return nil
	}
	conf := fmt.Sprintf(`# %s/%s: written by gitreceive's node agent at every start; removed by destroy.
%s/*.log {
	su %s %s
	size 20M
	rotate 3
	copytruncate
	compress
	delaycompress
	missingok
	notifempty
}
`, app, InstanceID(app, instance), logs, t.name, t.name)
	path := filepath.Join(rt.LogrotateDir, logrotateName(app, instance))
	if old, err := os.ReadFile(path); err == nil && string(old) == conf {
		return nil
	}
	if err := atomicfile.Write(path, []byte(conf), 0o644); err != nil {
		return err // names the file
	}
	return nil
}

func lookupGroupID(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("nginx's group %s: %w; run `gitreceive nodes setup` for this node", name, err)
	}
	return strconv.Atoi(g.Gid)
}

// ensureAppDir makes dir (its parents root's) owned by the instance's user
// with mode. Its parent must be root's: the app must not be able to swap
// dir for a symlink.
func ensureAppDir(dir string, mode fs.FileMode, t tenant) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Through a descriptor opened without following symlinks: whatever
	// happens to the path, root changes this directory and nothing else.
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("%s: %w (it must be a directory)", dir, err)
	}
	defer f.Close()
	if err := f.Chown(t.uid, t.gid); err != nil {
		return err
	}
	return f.Chmod(mode)
}

// ensureSecret creates the secret once: 32 random bytes, hex. An existing
// one is kept as it is (apps sign cookies with it), only its owner and
// mode are put right.
func ensureSecret(path, want string, ids tenant) error {
	if want != "" {
		// The receiver's: the same on every node of the instance, so that
		// what the app signs with it (sessions, tokens) holds on all.
		fi, err := os.Lstat(path)
		if err == nil && !fi.Mode().IsRegular() {
			return errors.New("it is not a regular file; move it away")
		}
		if have, _ := os.ReadFile(path); err != nil || string(have) != want {
			return atomicfile.WriteOwned(path, []byte(want), 0o600, ids.uid, ids.gid)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return errors.New("it is not a regular file; move it away")
		}
		if err := os.Lchown(path, ids.uid, ids.gid); err != nil {
			return err
		}
		return os.Chmod(path, 0o600)
	}
	if err != nil {
		return err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	err = errors.Join(f.Chown(ids.uid, ids.gid), writeAll(f, []byte(hex.EncodeToString(b[:]))), f.Sync(), f.Close())
	if err != nil {
		os.Remove(path)
	}
	return err
}

func writeAll(f *os.File, data []byte) error {
	_, err := f.Write(data)
	return err
}

// resetTempDir empties TEMP: the old one is renamed away first, so nothing
// the app does meanwhile lands in the new one, then removed (os.RemoveAll
// does not follow symlinks the app may have left).
func resetTempDir(dir string, ids tenant) error {
	if _, err := os.Lstat(dir); err == nil {
		old, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".old-")
		if err != nil {
			return err
		}
		if err := os.Rename(dir, filepath.Join(old, "x")); err != nil {
			os.Remove(old)
			return err
		}
		if err := os.RemoveAll(old); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := os.Lchown(dir, ids.uid, ids.gid); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// --- the env file -------------------------------------------------------------

// formatEnvFile writes KEY=VALUE lines, sorted, one per variable. Values
// are taken verbatim by every reader (the bootstraps, update_fetch): only
// a newline, CR or NUL cannot be held, and Spec.Validate refuses those.
func formatEnvFile(env map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(env))
	for k := range env {
		if !envName.MatchString(k) {
			return nil, fmt.Errorf("env: %q is not a variable name", k)
		}
		if strings.ContainsAny(env[k], "\x00\n\r") {
			return nil, fmt.Errorf("env %s: a value must be one line", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(env[k])
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// parseEnvFile is formatEnvFile's inverse: each line split at its first '='.
func parseEnvFile(data []byte) ([]string, error) {
	var env []string
	for i, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok || !envName.MatchString(k) {
			return nil, fmt.Errorf("line %d is not KEY=VALUE", i+1)
		}
		env = append(env, line)
	}
	return env, nil
}

func readEnvFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env, err := parseEnvFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return env, nil
}

// --- the vassal file and bootstraps --------------------------------------

// vassalConfig is everything a vassal file says, resolved.
type vassalConfig struct {
	App, Instance string
	N             int
	Spec          Spec   // with defaults, validated
	ReleaseDir    string // real path
	Socket        string
	LogFile       string
	Bootstrap     string // python: the WSGI file; php: the env script run before each request
	UID, GID      int    // the instance's user and group
	NginxGID      int    // the socket's group: nginx's workers connect through it
	Cgroup        bool   // the emperor's wrapper puts the master into the instance's cgroup
	PythonDir     string // gitreceive's Python support, "" for none (Runtime.PythonDir)
}

// iniSafe is what a path may hold in a vassal file. uWSGI expands '%' in
// values ('%%' is a literal one; instance names may hold '%'), and '$(' and
// '@(' with no escape at all: no '$' or '(' passes.
var iniSafe = regexp.MustCompile(`^/[A-Za-z0-9._/%+@-]*$`)

// iniPath returns p as a uWSGI ini value.
func iniPath(p string) (string, error) {
	if !iniSafe.MatchString(p) {
		return "", fmt.Errorf("path %q cannot be written into a vassal file (allowed: letters, digits and ._/%%+@-)", p)
	}
	return strings.ReplaceAll(p, "%", "%%"), nil
}

// vassalINI is the vassal file. Nothing from the wire reaches it except
// through Spec's allow-listed paths and numbers; env values never do.
func vassalINI(c vassalConfig) (string, error) {
	s := c.Spec
	paths := map[string]string{"release": c.ReleaseDir, "socket": c.Socket, "log": c.LogFile, "bootstrap": c.Bootstrap}
	q := map[string]string{}
	for name, p := range paths {
		v, err := iniPath(p)
		if err != nil {
			return "", fmt.Errorf("vassal file, %s: %w", name, err)
		}
		q[name] = v
	}
	// sun_path holds 108 bytes, its NUL included.
	if len(c.Socket) > 107 {
		return "", fmt.Errorf("socket path %s is longer than the 107 bytes a unix socket address holds", c.Socket)
	}
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	// Comment lines are skipped whole by uWSGI, '%' included.
	line("; %s/%s v%d, written by gitreceive's node agent when the release starts and", c.App, c.Instance, c.N)
	line("; removed when it stops; edits are lost. The app's environment is not here:")
	line("; the bootstrap reads it from the instance's env file (see nodes/agent/vassal.go).")
	line("[uwsgi]")
	line("; Unknown options are errors, not silently ignored.")
	line("strict = true")
	switch s.Platform {
	case "python":
		line("plugins = python3")
	case "php":
		line("; As modifier 0, so nginx's uwsgi_pass needs no uwsgi_modifier1 14.")
		line("plugins = 0:php")
	}
	if c.Cgroup {
		// Read by the emperor's wrapper (VassalExec), which puts the master
		// into the instance's cgroup with these limits before uWSGI runs.
		line("%s %s %d %d %d", vassalLimitsMarker, InstanceID(c.App, c.Instance), s.MemoryMB, s.MaxProcesses, s.CPUWeight)
	}
	line("; The socket is bound while the master is still root (chown-socket makes")
	line("; uWSGI bind it before dropping privileges), in a directory only root may")
	line("; write, so no app can rename or replace it, and handed to the instance's user")
	line("; and nginx's group. uWSGI then also opens the log as root: it lies in a")
	line("; directory only root may write (see uwsgiLogPath), never in the app's own.")
	line("uid = %d", c.UID)
	line("gid = %d", c.GID)
	line("chdir = %s", q["release"])
	line("; The interpreter's encoding: a C locale would make Python's ASCII, and a")
	line("; reload starts from the app's environment, which need not say.")
	line("env = LANG=C.UTF-8")
	line("master = true")
	line("processes = %d", s.Workers)
	line("harakiri = %d", s.Harakiri)
	line("max-requests = %d", s.MaxRequests)
	line("reload-on-rss = %d", s.ReloadOnRSS)
	if s.IdleStop > 0 {
		line("; Idle: the workers stop after this many seconds without a request")
		line("; (cheap mode); the master keeps the socket and starts them on the next.")
		line("idle = %d", s.IdleStop)
	}
	line("socket = %s", q["socket"])
	line("chown-socket = %d:%d", c.UID, c.NginxGID)
	line("chmod-socket = 660")
	line("; No vacuum: the instance's user cannot remove the socket from root's")
	line("; directory; StopRelease does.")
	line("; Room for long URLs and cookies (uWSGI's default is 4 KB).")
	line("buffer-size = 32768")
	line("; Every vassal of the instance logs to app.log; uWSGI's own lines say which.")
	line("log-prefix = [v%d]", c.N)
	line("logto2 = %s", q["log"])
	switch s.Platform {
	case "python":
		line("; An app that fails to import must not run.")
		line("need-app = true")
		line("single-interpreter = true")
		line("enable-threads = true")
		line("wsgi-file = %s", q["bootstrap"])
		line("callable = application")
	case "php":
		docroot := c.ReleaseDir
		if s.PHPRoot != "" && s.PHPRoot != "." {
			docroot = filepath.Join(c.ReleaseDir, s.PHPRoot)
		}
		qdoc, err := iniPath(docroot)
		if err != nil {
			return "", fmt.Errorf("vassal file, php_root: %w", err)
		}
		qrunner, err := iniPath(filepath.Join(c.ReleaseDir, s.Runner))
		if err != nil {
			return "", fmt.Errorf("vassal file, runner: %w", err)
		}
		line("php-docroot = %s", qdoc)
		line("; Only .php files under the document root run (and the front controller).")
		line("; No trailing slash: uWSGI checks the docroot itself, for its index.")
		line("php-allowed-docroot = %s", qdoc)
		if !strings.HasPrefix(filepath.Join(c.ReleaseDir, s.Runner), docroot+"/") {
			line("php-allowed-docroot = %s", qrunner)
		}
		line("php-allowed-ext = .php")
		line("php-index = index.php")
		if base := filepath.Base(s.Runner); filepath.Dir(filepath.Join(c.ReleaseDir, s.Runner)) == docroot && base != "index.php" {
			line("php-index = %s", base)
		}
		line("; The front controller answers paths that are not files.")
		line("php-fallback = %s", qrunner)
		line("php-exec-before = require '%s';", q["bootstrap"])
	}
	return b.String(), nil
}

// pythonBootstrap is the WSGI file uWSGI loads: the environment from the
// env file (verbatim: '%', '$', quotes and spaces arrive as written), laid
// over the vassal's own (the emperor's clean one: PATH, LANG; and uWSGI's
// UWSGI_* variables, which a reload needs), the release's site
// directories, then the runner, whose callable it exposes.
func pythonBootstrap(c vassalConfig, envFile string) ([]byte, error) {
	lit := func(s string) string {
		b, _ := json.Marshal(s) // a JSON string is a Python string literal
		return string(b)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s/%s v%d: the WSGI file uWSGI loads, written by gitreceive's node agent\n", c.App, c.Instance, c.N)
	b.WriteString("# at every start of the release. Edits are lost.\n")
	b.WriteString("import importlib.util\nimport os\nimport sys\n\n")
	fmt.Fprintf(&b, "RELEASE = %s\nENV_FILE = %s\nRUNNER = %s\nCALLABLE = %s\nPYTHON_SUPPORT = %s\n\n\n",
		lit(c.ReleaseDir), lit(envFile), lit(c.Spec.Runner), lit(c.Spec.Callable), lit(c.PythonDir))
	b.WriteString(`def _gitreceive_env(path):
    # KEY=VALUE lines, split at the first "=", nothing quoted or expanded.
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        lines = f.read().split("\n")
    for line in lines:
        if line:
            key, _, value = line.partition("=")
            os.environ[key] = value




_gitreceive_env(ENV_FILE)
# The release's site directories and silvercustomize, once the app's
# environment is in place (see gitreceive_site.py in PYTHON_SUPPORT).
if PYTHON_SUPPORT:
    sys.path.insert(0, PYTHON_SUPPORT)
    import gitreceive_site
    gitreceive_site.activate(RELEASE)
_spec = importlib.util.spec_from_file_location("gitreceive_runner", os.path.join(RELEASE, RUNNER))
_runner = importlib.util.module_from_spec(_spec)
sys.modules["gitreceive_runner"] = _runner
_spec.loader.exec_module(_runner)
try:
    application = getattr(_runner, CALLABLE)
except AttributeError:
    raise RuntimeError("runner %s defines no %s (app.ini: runner = FILE#CALLABLE)" % (RUNNER, CALLABLE)) from None
`)
	return []byte(b.String()), nil
}

// phpBootstrap runs before every request (php-exec-before): it puts the
// env file's variables into getenv(), $_ENV and $_SERVER, verbatim. PHP
// restores the process environment after each request, hence every time.
func phpBootstrap(c vassalConfig, envFile string) ([]byte, error) {
	if !iniSafe.MatchString(envFile) || strings.ContainsAny(envFile, `'\`) {
		return nil, fmt.Errorf("env file path %q cannot be written into PHP", envFile)
	}
	var b strings.Builder
	b.WriteString("<?php\n")
	fmt.Fprintf(&b, "// %s/%s v%d: run before every request, written by gitreceive's node agent\n", c.App, c.Instance, c.N)
	b.WriteString("// at every start of the release. Edits are lost.\n")
	b.WriteString("(static function () {\n")
	fmt.Fprintf(&b, "    $file = '%s';\n", envFile)
	b.WriteString(`    $data = file_get_contents($file);
    if ($data === false) {
        throw new RuntimeException("gitreceive: cannot read the environment from $file; start the release again");
    }
    foreach (explode("\n", $data) as $line) {
        $eq = strpos($line, '=');
        if ($eq === false) {
            continue;
        }
        $key = substr($line, 0, $eq);
        $value = substr($line, $eq + 1);
        putenv($line);
        $_ENV[$key] = $value;
        $_SERVER[$key] = $value;
    }
})();
`)
	return []byte(b.String()), nil
}

// --- update_fetch ---------------------------------------------------------------

func updateFetch(ctx context.Context, rt Runtime, app, instance string, n int, spec Spec, files instanceFiles,
	step FetchStep, env []string, out io.Writer) error {
	timeout := spec.HealthTimeout()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	started := time.Now()
	if step.URLPath != "" {
		loc := spec.Locations[0]
		status, _, err := UwsgiGet(sctx, rt.SocketPath(app, instance, n), loc.Host, loc.Path, step.URLPath)
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
	if err := runFetchScript(sctx, rt, app, instance, files.vassal.ReleaseDir, step, env, t, out); err != nil {
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
func runFetchScript(ctx context.Context, rt Runtime, app, instance, release string, step FetchStep, env []string, t tenant, out io.Writer) error {
	script, err := fetchCommand(release, step)
	if err != nil {
		return err
	}
	argv, cred, err := asInstance(rt, app, instance, t, script)
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

// --- the emperor -------------------------------------------------------------

// emperorVassal is one vassal in the emperor's stats.
type emperorVassal struct {
	ID       string `json:"id"`
	PID      int    `json:"pid"`
	Respawns int    `json:"respawns"`
}

// emperorVassals asks the emperor's stats socket for its vassals. The
// connection also makes the emperor scan its directory; the answer tells
// what it knew before that scan.
func emperorVassals(ctx context.Context, socket string) ([]emperorVassal, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	if err := conn.SetDeadline(dl); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(conn, 8<<20))
	if err != nil {
		return nil, err
	}
	var stats struct {
		Vassals []emperorVassal `json:"vassals"`
	}
	if err := json.Unmarshal(data, &stats); err != nil {
		return nil, fmt.Errorf("emperor stats: %w", err)
	}
	return stats.Vassals, nil
}

// ringEmperor makes the emperor scan its vassals directory now rather than
// at its next tick. Errors do not matter: the scan every second still finds
// the change.
func ringEmperor(ctx context.Context, socket string) {
	emperorVassals(ctx, socket)
}
