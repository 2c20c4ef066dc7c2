package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// How the agent starts, stops and watches a release's workers supervisor
// (supervisor.go): one vassal file per release, ID.vN.workers.ini.

// workerWatchPoll is how often the state file is read while a new
// release's workers are watched.
const workerWatchPoll = 200 * time.Millisecond

// workerLogPath is worker NAME's log, beside app.log in root's directory.
func (ri runtimeInstance) workerLogPath(name string) string {
	return filepath.Join(ri.nginxLogsDir(), "worker."+name+".log")
}

// workersVassalPath is release n's workers vassal file.
func (ri runtimeInstance) workersVassalPath(n int) string {
	return filepath.Join(ri.rt.VassalsDir, ri.workersVassalID(n))
}

func (ri runtimeInstance) workersVassalID(n int) string {
	return ri.id() + ".v" + strconv.Itoa(n) + ".workers.ini"
}

// workerReleases lists the releases whose workers vassal file is there.
func (ri runtimeInstance) workerReleases() []int {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(ri.id()) + `\.v([0-9]+)\.workers\.ini$`)
	entries, _ := os.ReadDir(ri.rt.VassalsDir)
	var ns []int
	for _, e := range entries {
		if m := re.FindStringSubmatch(e.Name()); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
				ns = append(ns, n)
			}
		}
	}
	slices.Sort(ns)
	return ns
}

// startWorkers writes release n's workers vassal, so the emperor starts
// its supervisor, unless the release has no workers and no cron jobs or it
// runs already. It reports whether it started one.
func (ri runtimeInstance) startWorkers(ctx context.Context, n int, spec Spec) (bool, error) {
	// Every node runs a supervisor, singletons or not: the hold may come
	// to it (singletons.go).
	if len(spec.BackgroundWorkers) == 0 && len(spec.CronJobs) == 0 {
		return false, nil
	}
	vassal := ri.workersVassalPath(n)
	if _, err := os.Stat(vassal); err == nil {
		return false, nil
	}
	spec = spec.WithDefaults()
	var b strings.Builder
	fmt.Fprintf(&b, "; %s/%s v%d's workers, written by gitreceive's node agent when the release goes\n", ri.app, ri.name, n)
	b.WriteString("; live and removed when its workers stop. Not a uWSGI file: the emperor's\n")
	b.WriteString("; wrapper runs gitreceive's workers supervisor for it (nodes/agent/supervisor.go).\n")
	fmt.Fprintf(&b, "%s %s %s %d\n", workersMarker, ri.app, ri.name, n)
	if ri.rt.CgroupRoot != "" {
		fmt.Fprintf(&b, "%s %s %d %d %d\n", vassalLimitsMarker, ri.id(), spec.MemoryMB, spec.MaxProcesses, spec.CPUWeight)
	}
	b.WriteString("[uwsgi]\n")
	if err := ri.ensureInstanceCgroup(spec); err != nil {
		return false, err
	}
	os.Remove(workersStatePath(ri.dir(), n))
	if err := atomicfile.Write(vassal, []byte(b.String()), 0o644); err != nil {
		return false, fmt.Errorf("the workers vassal file: %w", err)
	}
	ringEmperor(ctx, ri.rt.EmperorStats)
	return true, nil
}

// stopWorkers removes release n's workers vassal and waits for its
// supervisor to stop them (SIGTERM, each worker's stop timeout, SIGKILL);
// a supervisor still there a few seconds past the longest stop timeout is
// killed, and its workers with it. No error if none ran.
func (ri runtimeInstance) stopWorkers(ctx context.Context, n int) error {
	vassal := ri.workersVassalPath(n)
	err := os.Remove(vassal)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing the workers vassal file %s: %w", vassal, err)
	}
	ringEmperor(ctx, ri.rt.EmperorStats)
	wait := time.Duration(DefaultWorkerStopTimeout) * time.Second
	if spec, err := readSpec(ri.dir(), n); err == nil {
		for _, w := range spec.BackgroundWorkers {
			wait = max(wait, time.Duration(w.StopTimeout)*time.Second)
		}
	}
	deadline := time.Now().Add(wait + 5*time.Second)
	id := ri.workersVassalID(n)
	for {
		pid, running := ri.workersSupervisor(ctx, id)
		if !running {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL) // its workers die with it (Pdeathsig)
			deadline = time.Now().Add(time.Hour)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for v%d's workers of %s/%s to stop: %w", n, ri.app, ri.name, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
	os.Remove(workersStatePath(ri.dir(), n))
	return nil
}

// DefaultWorkerStopTimeout is app.ini's default worker.NAME.stop_timeout.
const DefaultWorkerStopTimeout = 30

// workersSupervisor is the pid of the supervisor the emperor runs for the
// workers vassal id, if it runs.
func (ri runtimeInstance) workersSupervisor(ctx context.Context, id string) (int, bool) {
	vs, err := emperorVassals(ctx, ri.rt.EmperorStats)
	if err != nil {
		return 0, false
	}
	for _, v := range vs {
		if v.ID == id && v.PID > 0 {
			return v.PID, true
		}
	}
	return 0, false
}

// stopAllWorkers stops the workers of every release but keep (0: all).
func (ri runtimeInstance) stopAllWorkers(ctx context.Context, keep int) error {
	var errs []error
	for _, n := range ri.workerReleases() {
		if n != keep {
			errs = append(errs, ri.stopWorkers(ctx, n))
		}
	}
	return errors.Join(errs...)
}

// switchWorkers runs release n's workers (now live) instead of any
// other release's: the old ones stop first, then n's start (none while
// the instance is disabled), and those of n that exit within earlyExit of
// their start are reported on warn. The web switch is done by then and
// stays: what goes wrong here is a warning.
func (in instance) switchWorkers(ctx context.Context, n int, warn io.Writer) {
	ri := in.runtime()
	if err := ri.stopAllWorkers(ctx, n); err != nil {
		fmt.Fprintf(warn, "warning: v%d is live, but stopping the workers of older releases failed: %v\n", n, err)
	}
	if in.disabled() {
		return
	}
	spec, err := in.spec(n)
	if err != nil {
		fmt.Fprintf(warn, "warning: v%d is live, but its workers did not start: %v\n", n, err)
		return
	}
	started, err := ri.startWorkers(ctx, n, spec)
	if err != nil {
		fmt.Fprintf(warn, "warning: v%d is live, but its workers did not start: %v\n", n, err)
		return
	}
	if started && spec.runsWorkers(holdsSingletons(in.dir, spec)) {
		ri.watchWorkers(ctx, n, warn)
	}
}

// watchWorkers watches release n's workers for earlyExit after their
// start and reports on warn those that exited or could not start.
func (ri runtimeInstance) watchWorkers(ctx context.Context, n int, warn io.Writer) {
	began := time.Now()
	var st workersState
	var err error
	for time.Since(began) < earlyExit+time.Second {
		if st, err = readWorkersState(ri.dir(), n); err == nil {
			if failed := earlyFailures(st); len(failed) > 0 {
				for _, line := range failed {
					fmt.Fprintf(warn, "warning: v%d is live (the web switch is not undone), but %s\n", n, line)
				}
				return
			}
			if time.Since(st.Started) >= earlyExit {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(workerWatchPoll):
		}
	}
	if err != nil {
		fmt.Fprintf(warn, "warning: v%d is live, but its workers' supervisor has not started; see %s\n", n, emperorLog(ri.rt))
	}
}

// earlyFailures says which workers could not start or exited: one line each.
func earlyFailures(st workersState) []string {
	seen := map[string]bool{}
	var lines []string
	for _, p := range st.Processes {
		if seen[p.Name] {
			continue
		}
		switch {
		case p.Error != "":
			lines = append(lines, fmt.Sprintf("worker %s cannot start: %s", p.Name, p.Error))
		case p.Restarts > 0:
			lines = append(lines, fmt.Sprintf("worker %s exited %.1f s after its start (%s); it is started again with back-off: see `logs --process %s`",
				p.Name, p.ExitedAt.Sub(p.Started).Seconds(), p.LastExit, p.Name))
		default:
			continue
		}
		seen[p.Name] = true
	}
	return lines
}

// restartWorkers asks the live release's supervisor to restart the named
// workers (none: all) gracefully.
func (ri runtimeInstance) restartWorkers(ctx context.Context, live int, names []string) error {
	pid, running := ri.workersSupervisor(ctx, ri.workersVassalID(live))
	if !running {
		return fmt.Errorf("%s@%s runs no workers on this node", ri.app, ri.name)
	}
	data := strings.Join(names, "\n") + "\n"
	if err := atomicfile.Write(restartRequestPath(ri.dir(), live), []byte(data), 0o600); err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGHUP)
}
