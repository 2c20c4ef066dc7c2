package receiver

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

// The commands on an instance's background processes (DESIGN.md decision
// 11): ps, ps:restart, cron:run; logs --process shows one's log.
const (
	psUsage        = "ps APP[@BRANCH] [--json]"
	psRestartUsage = "ps:restart APP[@BRANCH] [NAME]"
	cronRunUsage   = "cron:run APP[@BRANCH] NAME"
)

func init() {
	commands["ps"] = command{usage: psUsage, summary: "show an instance's processes on each node: web, workers (pid, uptime, restarts, memory), cron jobs (node, last run, next run)",
		pty: true, target: psTarget, run: (*Server).psCommand}
	commands["ps:restart"] = command{usage: psRestartUsage, summary: "restart an instance's workers (or the one named) on every node, each with SIGTERM first",
		pty: true, target: targetAt(psRestartUsage, func(a []string) bool { return len(a) == 2 || len(a) == 3 && names.IsProcess(a[2]) }),
		run: (*Server).psRestartCommand}
	commands["cron:run"] = command{usage: cronRunUsage, summary: "run a cron job now on the node that holds it, its output streamed (not while its last run still goes)",
		pty: true, target: targetAt(cronRunUsage, func(a []string) bool { return len(a) == 3 && names.IsProcess(a[2]) }),
		run: (*Server).cronRunCommand}
}

// psTarget: ps APP[@BRANCH] [--json].
func psTarget(args []string) (string, error) {
	rest := slices.DeleteFunc(slices.Clone(args[1:]), func(a string) bool { return a == "--json" })
	if len(rest) != 1 {
		return "", userErrorf("usage: %s", psUsage)
	}
	return rest[0], nil
}

func (s *Server) psCommand(c *call) error {
	t := c.target
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return c.internal(err, "cannot read the node inventory")
	}
	reports := s.fleet.Ps(c.sess.Context(), targets, t.app, t.instance)
	if slices.Contains(c.args[1:], "--json") {
		out := map[string]any{}
		for _, r := range reports {
			if r.Err != nil {
				out[r.Node.Name] = map[string]string{"error": r.Err.Error()}
				continue
			}
			out[r.Node.Name] = r.Report
		}
		enc := json.NewEncoder(c.stdout())
		enc.SetIndent("", "  ")
		return enc.Encode(out)
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
			fmt.Fprintf(tw, "%s\t%s.%d\tv%d\t%d\t%s\t%d\t%s\t%s\n", r.Node.Name, w.Name, w.Index, w.Release, w.PID,
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
	t := c.target
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return c.internal(err, "cannot read the node inventory")
	}
	var only []string
	if len(c.args) == 3 {
		only = c.args[2:]
	}
	c.log.Info().Str("app", t.app).Str("instance", t.instance).Strs("names", only).Msg("ps:restart")
	if err := s.fleet.RestartWorkers(c.sess.Context(), targets, t.app, t.instance, only); err != nil {
		return c.fail("%v", err)
	}
	fmt.Fprintf(c.stdout(), "restarting the workers of %s on %d node(s)\n", t, len(targets))
	return nil
}

func (s *Server) cronRunCommand(c *call) error {
	t, name := c.target, c.args[2]
	targets, err := s.fleet.Inventory.Targets()
	if err != nil {
		return c.internal(err, "cannot read the node inventory")
	}
	node, err := cronNode(s.fleet.Ps(c.sess.Context(), targets, t.app, t.instance), name)
	if err != nil {
		return c.fail("%s: %v", t, err)
	}
	c.log.Info().Str("app", t.app).Str("instance", t.instance).Str("job", name).Str("node", node.Name).Msg("cron:run")
	out := &lockedWriter{w: c.stdout()}
	if err := s.fleet.CronRun(c.sess.Context(), node, t.app, t.instance, name, func(line string) {
		out.printf("%s\n", nodeLine(node.Name, "%s", line))
	}); err != nil {
		return c.fail("%v", err)
	}
	return nil
}

// cronNode is the node that holds cron job name.
func cronNode(reports []nodes.NodePs, name string) (nodes.Node, error) {
	declared := false
	for _, r := range reports {
		for _, j := range r.Report.Cron {
			if j.Name == name {
				declared = true
				if j.Here {
					return r.Node, nil
				}
			}
		}
	}
	if declared {
		return nodes.Node{}, fmt.Errorf("no node runs cron job %s now (is the instance disabled, or its node down?); see `ps`", name)
	}
	return nodes.Node{}, fmt.Errorf("the live release has no cron job %s; see `ps`", name)
}
