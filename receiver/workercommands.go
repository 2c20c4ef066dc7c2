package receiver

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
	"github.com/gitreceive/gitreceive/receiver/apps"
)

// The commands on an instance's background processes (DESIGN.md decision
// 11): ps, ps:restart, cron:run; logs --process shows one's log.
const (
	psUsage        = "ps APP[@BRANCH] [--json]"
	psRestartUsage = "ps:restart APP[@BRANCH] [NAME]"
	cronRunUsage   = "cron:run APP[@BRANCH] NAME"
)

// psRestartTarget: ps:restart APP[@BRANCH] [NAME].
func psRestartTarget(a argv) (string, error) {
	if len(a.words) < 2 || len(a.words) > 3 || len(a.words) == 3 && !names.IsProcess(a.words[2]) {
		return "", apps.Failf("usage: %s", psRestartUsage)
	}
	return a.words[1], nil
}

// cronRunTarget: cron:run APP[@BRANCH] NAME.
func cronRunTarget(a argv) (string, error) {
	if len(a.words) != 3 || !names.IsProcess(a.words[2]) {
		return "", apps.Failf("usage: %s", cronRunUsage)
	}
	return a.words[1], nil
}

func (s *Server) psCommand(c *call) error {
	reports, err := s.apps.Ps(c.ctx, c.target)
	if err != nil {
		return err
	}
	if c.argv.bool("json") {
		out := map[string]any{}
		for _, r := range reports {
			if r.Err != nil {
				out[r.Node.Name] = map[string]string{"error": r.Err.Error()}
				continue
			}
			out[r.Node.Name] = r.Report
		}
		return printJSON(c, out)
	}
	writePs(c, reports)
	return nil
}

// writePs prints ps's table: one block per node.
func writePs(c *call, reports []nodes.NodePs) {
	tw := tabwriter.NewWriter(c.stdout(), 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "NODE\tPROCESS\tRELEASE\tPID\tUPTIME\tRESTARTS\tMEMORY\tSTATE")
	var cronLines []string
	for _, r := range reports {
		if r.Err != nil {
			fmt.Fprintf(c.stderr(), "gitreceive: %v\n", r.Err)
			continue
		}
		rep := r.Report
		if rep.Release == 0 {
			fmt.Fprintf(tw, "%s\tweb\t-\t-\t-\t-\t-\tnot deployed here\n", r.Node.Name)
			continue
		}
		state := "running"
		switch {
		case rep.Disabled:
			state = "disabled (503)"
		case rep.Web.PID == 0:
			state = "not running"
		}
		fmt.Fprintf(tw, "%s\tweb (%d workers)\tv%d\t%d\t-\t-\t%s\t%s\n", r.Node.Name, rep.Web.Processes, rep.Release, rep.Web.PID, memory(rep.Web.MemoryKB), state)
		for _, w := range rep.Workers {
			state := "running"
			switch {
			case w.Error != "":
				state = "cannot start: " + w.Error
			case w.CrashLoop:
				state = "crash loop (last: " + w.LastExit + ")"
			case w.PID == 0:
				state = "restarting (last: " + w.LastExit + ")"
			}
			name := fmt.Sprintf("%s.%d", w.Name, w.Index)
			if w.OneNode {
				name += " (nodes = one)" // on this node only
			}
			fmt.Fprintf(tw, "%s\t%s\tv%d\t%d\t%s\t%d\t%s\t%s\n", r.Node.Name, name, w.Release, w.PID,
				(time.Duration(w.Uptime) * time.Second).String(), w.Restarts, memory(w.MemoryKB), state)
		}
		for _, j := range rep.Cron {
			if j.Here {
				cronLines = append(cronLines, cronLine(r.Node.Name, j))
			}
		}
	}
	if len(cronLines) > 0 {
		fmt.Fprintln(tw, "\nCRON\tNODE\tSCHEDULE\tLAST RUN\tEXIT\tDURATION\tNEXT RUN\t")
		for _, line := range cronLines {
			fmt.Fprintln(tw, line)
		}
	}
}

func cronLine(node string, j agent.CronJobReport) string {
	last, exit, took := "never", "-", "-"
	if !j.LastRun.IsZero() {
		last = j.LastRun.UTC().Format("2006-01-02 15:04:05")
		exit, took = j.Exit, fmt.Sprintf("%.1fs", j.Duration)
	}
	if j.Running {
		exit = fmt.Sprintf("running (v%d)", j.Release)
	}
	next := "-"
	if !j.Next.IsZero() {
		next = j.Next.UTC().Format("2006-01-02 15:04 UTC")
	}
	return strings.Join([]string{j.Name, node, j.Schedule, last, exit, took, next, ""}, "\t")
}

func memory(kb int) string {
	if kb == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fM", float64(kb)/1024)
}

func (s *Server) psRestartCommand(c *call) error {
	n, err := s.apps.RestartWorkers(c.ctx, c.target, c.args[2:])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout(), "restarting the workers of %s on %d node(s)\n", c.target, n)
	return nil
}

func (s *Server) cronRunCommand(c *call) error {
	return s.apps.CronRun(c.ctx, c.target, c.args[2], c.stdout())
}
