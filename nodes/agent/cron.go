package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // cron_timezone must not depend on the node's zoneinfo

	"github.com/robfig/cron/v3"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// Cron jobs (DESIGN.md decision 11). The node that holds an instance's
// singletons (singletons.go) runs its jobs at their times, from its live
// release's supervisor; each run is a process of its own, `gitreceive node cron-run
// APP INSTANCE NAME`, as `ssh silver cron:run` runs one by hand. A run
// holds its job's lock (run/cron.NAME.lock, flock) while it goes: a run
// due while the last one still goes is skipped and logged, and a deploy
// that replaces the supervisor leaves a running job alone, to finish (up
// to its timeout) under the release it started with, while the next runs
// use the new one. Runs missed while nothing was scheduling them (the node
// down, no live release) are not made up for.

// cronParser reads what appconfig accepted: 5 fields or an @descriptor.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// errCronBusy: the job's previous run still goes.
var errCronBusy = errors.New("its previous run is still going")

// cronState is the last run of a job on this node (run/cron.NAME.json).
type cronState struct {
	Release  int       `json:"release"`
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	Running  bool      `json:"running"`
	Exit     string    `json:"exit,omitempty"`
	Duration float64   `json:"duration_seconds,omitempty"`
	Skipped  int       `json:"skipped,omitempty"` // runs skipped because one went on
}

func cronStatePath(dir, name string) string {
	return filepath.Join(dir, runDirName, "cron."+name+".json")
}
func cronLockPath(dir, name string) string {
	return filepath.Join(dir, runDirName, "cron."+name+".lock")
}

// cronLogPath is job NAME's log, beside app.log in root's directory.
func (ri runtimeInstance) cronLogPath(name string) string {
	return filepath.Join(ri.nginxLogsDir(), "cron."+name+".log")
}

func readCronState(dir, name string) (cronState, error) {
	var st cronState
	data, err := os.ReadFile(cronStatePath(dir, name))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(data, &st)
}

func writeCronState(dir, name string, st cronState) {
	if data, err := json.Marshal(st); err == nil {
		_ = atomicfile.Write(cronStatePath(dir, name), data, 0o640)
	}
}

// cronRunVerb runs a cron job now; a run that fails is an error.
func cronRunVerb(ctx context.Context, c *call, r agentapi.CronRun) error {
	code, err := c.instance(r.Target).cronRun(ctx, r.Name, c.stdout)
	if err == nil && code != 0 {
		err = fmt.Errorf("cron job %s exited with status %d; see `logs --process %s`", r.Name, code, r.Name)
	}
	return err
}

// cronRun runs job name of the live release now, its output going to its
// log and to out; the job's exit code is returned (128+N for signal N).
// A job whose previous run still goes is not started: errCronBusy.
func (in instance) cronRun(ctx context.Context, name string, out io.Writer) (int, error) {
	if in.rt == nil {
		return 0, fmt.Errorf("no cron: %s moves the releases away from nginx and uWSGI", RootEnv)
	}
	live, _, err := current(in.dir)
	if err != nil || live == 0 {
		return 0, fmt.Errorf("%s@%s has no live release on this node", in.app, in.name)
	}
	spec, err := in.spec(live)
	if err != nil {
		return 0, err
	}
	job, ok := findCronJob(spec, name)
	if !ok {
		return 0, fmt.Errorf("v%d of %s@%s has no cron job %s (it has: %s)", live, in.app, in.name, name, cronNames(spec))
	}
	ri := in.runtime()
	t, err := ri.instanceUser(false)
	if err != nil {
		return 0, err
	}
	lock, err := os.OpenFile(cronLockPath(in.dir, name), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	log, err := openCappedLog(ri.cronLogPath(name), t.gid, workerLogCap)
	if err != nil {
		return 0, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		st, _ := readCronState(in.dir, name)
		st.Skipped++
		writeCronState(in.dir, name, st)
		log.line("%s skipped: its run of v%d started %s is still going", name, st.Release, st.Started.Format(time.RFC3339))
		return 0, fmt.Errorf("cron job %s was not started: %w (v%d, started %s)", name, errCronBusy, st.Release, st.Started.Format(time.RFC3339))
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	return in.runCronJob(ctx, live, spec, job, t, log, out)
}

// runCronJob runs job as the instance's user in release live, holding its
// lock, with its timeout (SIGTERM, then SIGKILL 5 s later).
func (in instance) runCronJob(ctx context.Context, live int, spec Spec, job CronSpec, t tenant, log *cappedLog, out io.Writer) (int, error) {
	ri := in.runtime()
	release, err := filepath.EvalSymlinks(ri.releaseDir(live))
	if err != nil {
		return 0, err
	}
	env, err := ri.runEnv(live, false)
	if err != nil {
		return 0, err
	}
	argv, err := scriptCommand(release, job.Command, envValue(env, "PATH"), job.Args)
	if err != nil {
		return 0, err
	}
	if err := ri.ensureInstanceCgroup(spec); err != nil {
		return 0, err
	}
	argv, cred, err := ri.asInstance(t, argv)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(job.Timeout)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = release, env
	w := io.MultiWriter(log, out)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = runKillDelay
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("cron job %s: %w", job.Name, err)
	}
	st, _ := readCronState(in.dir, job.Name)
	st = cronState{Release: live, PID: cmd.Process.Pid, Started: began.UTC(), Running: true, Skipped: st.Skipped}
	writeCronState(in.dir, job.Name, st)
	log.line("%s started (v%d, pid %d)", job.Name, live, cmd.Process.Pid)
	err = cmd.Wait()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left in its group
	code, how := 0, "exit status 0"
	if err != nil {
		how, code = err.Error(), 1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		code = ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	if ctx.Err() == context.DeadlineExceeded {
		how += fmt.Sprintf(" (stopped at its timeout, %d s)", job.Timeout)
	}
	st.Running, st.Exit, st.Duration = false, how, time.Since(began).Seconds()
	if now, err := readCronState(in.dir, job.Name); err == nil {
		st.Skipped = now.Skipped // runs skipped while this one went
	}
	writeCronState(in.dir, job.Name, st)
	log.line("%s ended after %.1f s: %s", job.Name, st.Duration, how)
	return code, nil
}

func findCronJob(spec Spec, name string) (CronSpec, bool) {
	for _, j := range spec.CronJobs {
		if j.Name == name {
			return j, true
		}
	}
	return CronSpec{}, false
}

func cronNames(spec Spec) string {
	var names []string
	for _, j := range spec.CronJobs {
		names = append(names, j.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// cronLocation is the spec's cron time zone (UTC when unset).
func cronLocation(spec Spec) *time.Location {
	if spec.CronTimezone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(spec.CronTimezone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// nextCronRun is when job next runs after now (zero: never, or a schedule
// the parser refuses).
func nextCronRun(spec Spec, job CronSpec, now time.Time) time.Time {
	sched, err := cronParser.Parse(job.Schedule)
	if err != nil {
		return time.Time{}
	}
	return sched.Next(now.In(cronLocation(spec)))
}

// scheduleCron starts each of spec's jobs at its times until ctx ends,
// when this node holds the singletons (s.hold) then: a run is `node
// cron-run` in a session of its own, so that it outlives this supervisor
// (a deploy) and keeps its lock.
func (s *supervisor) scheduleCron(ctx context.Context, spec Spec) {
	self, err := os.Executable()
	if err != nil {
		return
	}
	for _, job := range spec.CronJobs {
		go func(job CronSpec) {
			for {
				next := nextCronRun(spec, job, time.Now())
				if next.IsZero() {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				if held, _ := s.hold.get(); !held {
					continue // another node runs them (the receiver may move them here)
				}
				cmd := exec.Command(self, "node", "cron-run", s.ri.app, s.ri.name, job.Name)
				cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
				if err := cmd.Start(); err == nil {
					go cmd.Wait()
				}
			}
		}(job)
	}
}
