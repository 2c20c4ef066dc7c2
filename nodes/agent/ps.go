package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// PsReport is the answer to `ps APP INSTANCE`: what of the instance runs
// on this node (one JSON document).
type PsReport struct {
	Release  int  `json:"release"` // live (0: none)
	Disabled bool `json:"disabled,omitempty"`
	// Singletons: this node holds the instance's singletons (its cron jobs
	// and workers of nodes = one, singletons.go); SingletonsMoved: the
	// receiver moved them here (singletons-hold on), off the node the
	// deploy gave them to. OneNodeWorkers names the live release's
	// workers of nodes = one, wherever they run.
	Singletons      bool            `json:"singletons,omitempty"`
	SingletonsMoved bool            `json:"singletons_moved,omitempty"`
	OneNodeWorkers  []string        `json:"one_node_workers,omitempty"`
	Web             WebReport       `json:"web"`
	Workers         []WorkerReport  `json:"workers,omitempty"` // those running here
	Cron            []CronJobReport `json:"cron,omitempty"`
}

// WebReport is the live release's uWSGI vassal.
type WebReport struct {
	PID       int `json:"pid"`       // its master (0: not running)
	Processes int `json:"processes"` // web worker processes running now
	MemoryKB  int `json:"memory_kb"` // resident, master and workers
}

// WorkerReport is one worker process.
type WorkerReport struct {
	Name      string  `json:"name"`
	Index     int     `json:"index"`
	Release   int     `json:"release"`
	PID       int     `json:"pid"` // 0: waiting to start again
	Uptime    float64 `json:"uptime_seconds"`
	Restarts  int     `json:"restarts"`
	MemoryKB  int     `json:"memory_kb"`
	LastExit  string  `json:"last_exit,omitempty"`
	CrashLoop bool    `json:"crash_loop,omitempty"`
	Error     string  `json:"error,omitempty"`
	OneNode   bool    `json:"one_node,omitempty"` // worker.NAME.nodes = one: here only
}

// CronJobReport is one cron job as this node sees it.
type CronJobReport struct {
	Name     string    `json:"name"`
	Schedule string    `json:"schedule"`
	Here     bool      `json:"here"` // this node runs it
	Next     time.Time `json:"next,omitempty"`
	Running  bool      `json:"running,omitempty"`
	Release  int       `json:"release,omitempty"` // of the last run
	LastRun  time.Time `json:"last_run,omitempty"`
	Exit     string    `json:"exit,omitempty"`
	Duration float64   `json:"duration_seconds,omitempty"`
	Skipped  int       `json:"skipped,omitempty"`
}

func psVerb(ctx context.Context, c *call, r agentapi.Ps) error {
	rep, err := c.instance(r.Target).ps(ctx)
	if err != nil {
		return err
	}
	return json.NewEncoder(c.stdout).Encode(rep)
}

func restartVerb(ctx context.Context, c *call, r agentapi.Restart) error {
	in := c.instance(r.Target)
	if in.rt == nil {
		return errors.New("no workers run here: " + RootEnv + " moves the releases away from the app's runtime")
	}
	live, _, err := current(in.dir)
	if err != nil || live == 0 {
		return errors.New(in.app + "@" + in.name + " has no live release on this node")
	}
	return in.runtime().restartWorkers(ctx, live, r.Names)
}

// ps reports the instance on this node.
func (in instance) ps(ctx context.Context) (PsReport, error) {
	live, _, err := current(in.dir)
	if err != nil {
		return PsReport{}, err
	}
	rep := PsReport{Release: live, Disabled: in.disabled()}
	if in.rt == nil || live == 0 {
		return rep, nil
	}
	ri := in.runtime()
	if pid, ok := vassalRunning(ctx, *in.rt, filepath.Base(ri.vassalPath(live)), ri.socketPath(live)); ok && pid > 0 {
		rep.Web.PID, rep.Web.MemoryKB = pid, residentKB(pid)
		for _, child := range childPIDs(pid) {
			rep.Web.Processes++
			rep.Web.MemoryKB += residentKB(child)
		}
	}
	now := time.Now()
	for _, n := range ri.workerReleases() {
		st, err := readWorkersState(in.dir, n)
		if err != nil {
			continue
		}
		for _, p := range st.Processes {
			if p.Elsewhere {
				continue
			}
			w := WorkerReport{Name: p.Name, Index: p.Index, Release: n, PID: p.PID, Restarts: p.Restarts,
				LastExit: p.LastExit, CrashLoop: p.crashLooping(now), Error: p.Error, OneNode: p.OneNode}
			if p.PID > 0 {
				w.Uptime, w.MemoryKB = now.Sub(p.Started).Seconds(), residentKB(p.PID)
			}
			rep.Workers = append(rep.Workers, w)
		}
	}
	spec, err := in.spec(live)
	if err != nil {
		return rep, nil
	}
	// The hold, not whether a supervisor runs now: none runs for a moment
	// at a switch or an enable, and the receiver must not move the
	// singletons then.
	held := holdsSingletons(in.dir, spec)
	rep.Singletons, rep.SingletonsMoved = held, held && !spec.Singletons
	for _, w := range spec.BackgroundWorkers {
		if w.OneNode {
			rep.OneNodeWorkers = append(rep.OneNodeWorkers, w.Name)
		}
	}
	for _, j := range spec.CronJobs {
		// Here: runs here now (cron:run goes there), not while disabled.
		cj := CronJobReport{Name: j.Name, Schedule: j.Schedule, Here: held && !rep.Disabled}
		if cj.Here {
			cj.Next = nextCronRun(spec, j, now)
		}
		if st, err := readCronState(in.dir, j.Name); err == nil {
			cj.Running, cj.Release, cj.LastRun, cj.Exit, cj.Duration, cj.Skipped = st.Running, st.Release, st.Started, st.Exit, st.Duration, st.Skipped
		}
		rep.Cron = append(rep.Cron, cj)
	}
	return rep, nil
}

// crashLoops names release live's workers that are in a crash loop or
// cannot start (each once), from its supervisor's state: for `status`,
// which `apps` reads.
func crashLoops(dir string, live int, now time.Time) []string {
	if live == 0 {
		return nil
	}
	st, err := readWorkersState(dir, live)
	if err != nil {
		return nil
	}
	var names []string
	for _, p := range st.Processes {
		if (p.crashLooping(now) || p.Error != "") && !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	return names
}

// residentKB is a process's resident memory (VmRSS), 0 when unknown.
func residentKB(pid int) int {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(v)
			if len(fields) > 0 {
				kb, _ := strconv.Atoi(fields[0])
				return kb
			}
		}
	}
	return 0
}
