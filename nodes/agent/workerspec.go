package agent

import (
	"fmt"
	"strings"

	"github.com/gitreceive/gitreceive/names"
)

// WorkerSpec is one background process type of a release (app.ini's
// worker.NAME, a Procfile entry): Count copies of Command run beside the
// web vassal, under the release's workers supervisor (supervisor.go).
type WorkerSpec struct {
	Name        string   `json:"name"`
	Command     string   `json:"command"`        // release-relative file: run as `run` runs scripts
	Args        []string `json:"args,omitempty"` // an argv, never seen by a shell
	Count       int      `json:"count"`          // copies on this node, 1-16
	StopTimeout int      `json:"stop_timeout"`   // seconds from SIGTERM to SIGKILL
	// OneNode: worker.NAME.nodes = one. It runs on the node that holds the
	// instance's singletons only (singletons.go).
	OneNode bool `json:"one_node,omitempty"`
}

// CronSpec is one cron.NAME job of a release. It runs on the node that
// holds the instance's singletons only (singletons.go); the schedule is checked there with the
// app.ini rules.
type CronSpec struct {
	Name     string   `json:"name"`
	Schedule string   `json:"schedule"` // 5 fields or an @descriptor, in Spec.CronTimezone
	Command  string   `json:"command"`
	Args     []string `json:"args,omitempty"`
	Timeout  int      `json:"timeout"` // seconds before a run is stopped
}

// Bounds of the background processes' fields (app.ini holds them tighter).
const (
	maxWorkerTypes      = 32
	maxCronJobs         = 64
	maxWorkerCount      = 16
	maxWorkerStop       = 3600
	maxCronTimeout      = 7 * 24 * 3600
	maxProcessArgs      = 64
	maxProcessArgLength = 4096
)

// validateProcesses checks the workers and cron jobs as untrusted input:
// names by names.IsProcess, commands as release-relative paths, numbers in
// range, arguments without NUL.
func (s Spec) validateProcesses() error {
	if len(s.BackgroundWorkers) > maxWorkerTypes || len(s.CronJobs) > maxCronJobs {
		return fmt.Errorf("too many workers (%d, at most %d) or cron jobs (%d, at most %d)", len(s.BackgroundWorkers), maxWorkerTypes, len(s.CronJobs), maxCronJobs)
	}
	if err := checkProcesses("worker", len(s.BackgroundWorkers), func(i int) (string, string, []string) {
		w := s.BackgroundWorkers[i]
		return w.Name, w.Command, w.Args
	}); err != nil {
		return err
	}
	for _, w := range s.BackgroundWorkers {
		if w.Count < 1 || w.Count > maxWorkerCount || w.StopTimeout < 1 || w.StopTimeout > maxWorkerStop {
			return fmt.Errorf("worker %s: count %d (1-%d) or stop_timeout %d (1-%d) is out of range", w.Name, w.Count, maxWorkerCount, w.StopTimeout, maxWorkerStop)
		}
	}
	if err := checkProcesses("cron job", len(s.CronJobs), func(i int) (string, string, []string) {
		j := s.CronJobs[i]
		return j.Name, j.Command, j.Args
	}); err != nil {
		return err
	}
	for _, j := range s.CronJobs {
		if j.Timeout < 1 || j.Timeout > maxCronTimeout {
			return fmt.Errorf("cron job %s: timeout %d is out of range (1-%d)", j.Name, j.Timeout, maxCronTimeout)
		}
		if j.Schedule == "" || len(j.Schedule) > 200 || strings.ContainsAny(j.Schedule, "\x00\n\r") {
			return fmt.Errorf("cron job %s: schedule %q is not one line", j.Name, j.Schedule)
		}
	}
	if s.CronTimezone != "" && !timezoneName.MatchString(s.CronTimezone) {
		return fmt.Errorf("cron time zone %q is not an Area/City name", s.CronTimezone)
	}
	return nil
}

// checkProcesses checks the n processes of a kind (at gives each one's
// name, command and arguments): names by names.IsProcess, each once;
// commands as release paths; arguments bounded, without NUL.
func checkProcesses(kind string, n int, at func(i int) (name, command string, args []string)) error {
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		name, command, args := at(i)
		if !names.IsProcess(name) {
			return fmt.Errorf("%s name %q is not a process name", kind, name)
		}
		if seen[name] {
			return fmt.Errorf("%s %s is declared twice", kind, name)
		}
		seen[name] = true
		if err := checkSafeRelPath(command); err != nil {
			return fmt.Errorf("%s %s: command: %w", kind, name, err)
		}
		if len(args) > maxProcessArgs {
			return fmt.Errorf("%s %s has %d arguments, more than %d", kind, name, len(args), maxProcessArgs)
		}
		for _, a := range args {
			if len(a) > maxProcessArgLength || strings.ContainsRune(a, 0) {
				return fmt.Errorf("%s %s: an argument is longer than %d bytes or holds a NUL byte", kind, name, maxProcessArgLength)
			}
		}
	}
	return nil
}
