package appconfig

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // cron_timezone is checked on the receiver, whatever zoneinfo it has

	"github.com/robfig/cron/v3"

	"github.com/gitreceive/gitreceive/names"
)

// Background processes (DESIGN.md decision 11): worker.NAME runs beside the
// web process on the nodes, cron.NAME on a schedule on one node.
const (
	workerPrefix    = "worker."
	cronPrefix      = "cron."
	keyCronTimezone = "cron_timezone"

	// Limits on what one app may declare, and the defaults.
	maxWorkers         = 32
	maxCronJobs        = 64
	maxWorkerCount     = 16
	defaultStopTimeout = 30
	maxStopTimeout     = 3600
	defaultCronTimeout = 3600
	maxCronTimeout     = 7 * 24 * 3600
)

// Worker is one long-running process type (worker.NAME, or a Procfile
// entry other than web and release).
type Worker struct {
	Name        string
	Command     string   // a file in the tree
	Args        []string // nil when none; never seen by a shell
	OneNode     bool     // worker.NAME.nodes = one: on a single node, not on every one
	Count       int      // processes per node, 1-16
	StopTimeout int      // seconds between SIGTERM and SIGKILL
	From        string   // where it was declared: "app.ini:LINE" or "Procfile:LINE"
}

// CronJob is one cron.NAME: a command run on a schedule on exactly one node.
type CronJob struct {
	Name     string
	Schedule string // 5 fields, or a descriptor such as @daily
	Command  string // a file in the tree
	Args     []string
	Timeout  int // seconds before the run is stopped
}

// cronParser reads standard 5-field schedules (names such as mon-fri and
// jan allowed) and the @yearly ... @hourly descriptors.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// processKeys gathers worker.* and cron.* keys by process name while the
// [production] keys are read; checkProcesses judges them together, since a
// sub-key (worker.mail.count) means nothing without its process.
type processKeys struct {
	workers, crons map[string]map[string]setting // name -> attribute ("" is the command) -> setting
}

// collect files a worker.* or cron.* key; it reports false for a key of
// neither family.
func (p *processKeys) collect(c *checker, s setting) bool {
	var family map[string]map[string]setting
	var rest string
	switch {
	case strings.HasPrefix(s.key, workerPrefix):
		if p.workers == nil {
			p.workers = map[string]map[string]setting{}
		}
		family, rest = p.workers, strings.TrimPrefix(s.key, workerPrefix)
	case strings.HasPrefix(s.key, cronPrefix):
		if p.crons == nil {
			p.crons = map[string]map[string]setting{}
		}
		family, rest = p.crons, strings.TrimPrefix(s.key, cronPrefix)
	default:
		return false
	}
	name, attr, _ := strings.Cut(rest, ".")
	if !names.IsProcess(name) {
		c.errorf(s.line(), s.key, "%q is not a process name; use 1-30 lowercase letters, digits, '_' or '-', starting with a letter, e.g. %smailer", name, strings.SplitAfter(s.key, ".")[0])
		return true
	}
	if family[name] == nil {
		family[name] = map[string]setting{}
	}
	family[name][attr] = s
	return true
}

// checkProcesses reads the collected keys into cfg.
func (c *checker) checkProcesses(p processKeys, cfg *Config) {
	for _, name := range sortedKeys(p.workers) {
		if w, ok := c.checkWorker(name, p.workers[name]); ok {
			cfg.BackgroundWorkers = append(cfg.BackgroundWorkers, w)
		}
	}
	for _, name := range sortedKeys(p.crons) {
		if j, ok := c.checkCronJob(name, p.crons[name]); ok {
			cfg.CronJobs = append(cfg.CronJobs, j)
		}
	}
	if n := len(p.workers); n > maxWorkers {
		c.errorf(0, workerPrefix+"NAME", "declares %d workers, more than %d; merge some", n, maxWorkers)
	}
	if n := len(p.crons); n > maxCronJobs {
		c.errorf(0, cronPrefix+"NAME", "declares %d cron jobs, more than %d; merge some", n, maxCronJobs)
	}
	cfg.CronTimezone = c.checkCronTimezone(len(p.crons) > 0)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (c *checker) checkWorker(name string, keys map[string]setting) (Worker, bool) {
	w := Worker{Name: name, Count: 1, StopTimeout: defaultStopTimeout}
	ok := c.processAttributes(workerPrefix+name, keys, map[string]func(setting, string) bool{
		"nodes": func(s setting, v string) bool {
			if v != "all" && v != "one" {
				c.errorf(s.line(), s.key, "%q is neither all nor one; write all (a copy on every node, the default) or one", v)
				return false
			}
			w.OneNode = v == "one"
			return true
		},
		"count":        c.numberInto(&w.Count, 1, maxWorkerCount, " processes per node"),
		"stop_timeout": c.numberInto(&w.StopTimeout, 1, maxStopTimeout, " seconds"),
	})
	cmd, found := keys[""]
	if !found {
		return Worker{}, false // reported by processAttributes
	}
	fields := strings.Fields(cmd.value)
	if len(fields) == 0 {
		c.errorf(cmd.line(), cmd.key, "names no command; write %s = COMMAND [ARGS...], e.g. %s = bin/mailer.py --queue mail", cmd.key, cmd.key)
		return Worker{}, false
	}
	command, problem := commandInTree(c.tree, fields[0])
	if problem != "" {
		c.errorf(cmd.line(), cmd.key, "%s", problem)
		return Worker{}, false
	}
	w.Command, w.Args = command, argsOf(fields)
	w.From = fmt.Sprintf("%s:%d", c.file, cmd.line())
	return w, ok
}

func (c *checker) checkCronJob(name string, keys map[string]setting) (CronJob, bool) {
	j := CronJob{Name: name, Timeout: defaultCronTimeout}
	ok := c.processAttributes(cronPrefix+name, keys, map[string]func(setting, string) bool{
		"timeout": c.numberInto(&j.Timeout, 1, maxCronTimeout, " seconds"),
	})
	def, found := keys[""]
	if !found {
		return CronJob{}, false
	}
	schedule, rest, problem := ParseCronLine(def.value)
	if problem != "" {
		c.errorf(def.line(), def.key, "%s", problem)
		return CronJob{}, false
	}
	command, problem := commandInTree(c.tree, rest[0])
	if problem != "" {
		c.errorf(def.line(), def.key, "%s", problem)
		return CronJob{}, false
	}
	j.Schedule, j.Command, j.Args = schedule, command, argsOf(rest)
	return j, ok
}

// processAttributes checks the sub-keys of one process (prefix is
// worker.NAME or cron.NAME) with the checks given by attribute name; it
// reports whether all were good and the process itself is declared.
func (c *checker) processAttributes(prefix string, keys map[string]setting, checks map[string]func(setting, string) bool) bool {
	ok := true
	for _, attr := range sortedKeys(keys) {
		if attr == "" {
			continue
		}
		s := keys[attr]
		check, known := checks[attr]
		if !known {
			c.errorf(s.line(), s.key, "%s has no setting %s; it has %s", prefix, attr, strings.Join(sortedKeys(checks), ", "))
			ok = false
			continue
		}
		value, _, one := c.oneLine(s.key)
		if !one || !check(s, value) {
			ok = false
		}
	}
	if _, declared := keys[""]; !declared {
		first := keys[sortedKeys(keys)[0]]
		c.errorf(first.line(), first.key, "is set but %s is not; declare %s = ... or remove this key", prefix, prefix)
		return false
	}
	return ok
}

// numberInto is a check that reads a whole number from min to max into *dst.
func (c *checker) numberInto(dst *int, min, max int, unit string) func(setting, string) bool {
	return func(s setting, v string) bool {
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			c.errorf(s.line(), s.key, "%q is not a number from %d to %d%s; set one in that range or remove %s for the default", v, min, max, unit, s.key)
			return false
		}
		*dst = n
		return true
	}
}

// ParseCronLine splits a cron.NAME value, SCHEDULE COMMAND [ARGS...], into
// the schedule (5 fields, or one @descriptor) and the command's words,
// checking the schedule; problem says what is wrong, "" when nothing is.
func ParseCronLine(value string) (schedule string, command []string, problem string) {
	fields := strings.Fields(value)
	n := 5
	if len(fields) > 0 && strings.HasPrefix(fields[0], "@") {
		n = 1
	}
	if len(fields) <= n {
		return "", nil, fmt.Sprintf("%q needs a schedule and a command; write e.g. */5 * * * * bin/cleanup.py (minute hour day-of-month month day-of-week, then the command)", value)
	}
	schedule = strings.Join(fields[:n], " ")
	if problem := CheckSchedule(schedule); problem != "" {
		return "", nil, problem
	}
	return schedule, fields[n:], ""
}

// CheckSchedule says what is wrong with a cron schedule, "" when nothing.
func CheckSchedule(schedule string) string {
	if strings.HasPrefix(schedule, "@every") {
		return fmt.Sprintf("schedule %q: @every is not a cron schedule; write 5 fields, e.g. */5 * * * *", schedule)
	}
	sched, err := cronParser.Parse(schedule)
	if err != nil {
		return fmt.Sprintf("schedule %q is not valid (%v); write 5 fields: minute hour day-of-month month day-of-week, e.g. 30 2 * * mon-fri", schedule, err)
	}
	// robfig/cron gives up after five years: a schedule such as February
	// 30th never runs.
	if sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return fmt.Sprintf("schedule %q never runs; check the day of the month against the month", schedule)
	}
	return ""
}

// NextRun is when schedule (already checked) next fires after t in loc.
func NextRun(schedule string, loc *time.Location, t time.Time) (time.Time, error) {
	sched, err := cronParser.Parse(schedule)
	if err != nil {
		return time.Time{}, err
	}
	return sched.Next(t.In(loc)), nil
}

func (c *checker) checkCronTimezone(used bool) string {
	value, line, ok := c.oneLine(keyCronTimezone)
	if !ok {
		return ""
	}
	if !used {
		c.warnf(line, keyCronTimezone, "is set but no cron.NAME job is declared; it is ignored")
	}
	if _, err := LoadCronTimezone(value); err != nil {
		c.errorf(line, keyCronTimezone, "%q is not a time zone; write an IANA name such as Europe/Paris or America/New_York, or UTC", value)
		return ""
	}
	return value
}

// LoadCronTimezone is the location of a cron_timezone value: UTC or an
// IANA Area/City name (not "Local", which would depend on the machine).
func LoadCronTimezone(name string) (*time.Location, error) {
	if name != "UTC" && !strings.Contains(name, "/") {
		return nil, fmt.Errorf("time zone %q is not UTC or an Area/City name", name)
	}
	return time.LoadLocation(name)
}

// commandInTree finds a process's command in the pushed tree as `run`
// finds scripts, but only there: a path with '/' must be a file of the
// tree; a bare name is bin/NAME or NAME at the top.
func commandInTree(tree Tree, word string) (string, string) {
	if strings.Contains(word, "/") {
		p, err := cleanTreePath(word)
		if err != nil {
			return "", fmt.Sprintf("command %q %v; %s", word, err, pathFix)
		}
		if problem := treeFileProblem(tree, p); problem != "" {
			return "", fmt.Sprintf("command %s %s; %s", p, problem, pathFix)
		}
		return p, ""
	}
	for _, p := range []string{"bin/" + word, word} {
		if tree.IsFile(p) {
			return p, ""
		}
	}
	return "", fmt.Sprintf("command %q is not a file of the app (looked for bin/%s and %s at the top): a background process runs a program of the release; commit it, or add a small script in bin/ that starts the program you want", word, word, word)
}

func argsOf(fields []string) []string {
	if len(fields) < 2 {
		return nil
	}
	return fields[1:]
}
