// Package agentapi is the node agent's command line as typed requests: one
// struct per verb of `gitreceive node VERB ...`, which package nodes turns
// into the argv it runs on a node (Argv) and the agent parses back (Parse),
// validating every name with package names. The words on the wire are
// those of earlier versions, so a receiver can still talk to an older
// agent long enough to see its version and replace it.
package agentapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/gitreceive/gitreceive/names"
)

// Usage is the agent's usage message.
const Usage = `usage: gitreceive node VERB ...
  manifest   APP INSTANCE          the current release and its manifest
  receive    APP INSTANCE N [--full]
  start      APP INSTANCE N [--stored]
  prepare    APP INSTANCE N        manifest, receive and start in one session
  activate   APP INSTANCE N
  deactivate APP INSTANCE N
  abort      APP INSTANCE N
  releases   APP INSTANCE
  logs       APP INSTANCE LINES [-f] [--process=NAME]
  ps         APP INSTANCE
  restart    APP INSTANCE [NAME...]
  cron-run   APP INSTANCE NAME
  singletons-hold APP INSTANCE on|off
  disable    APP INSTANCE
  enable     APP INSTANCE
  destroy    APP INSTANCE
  run        APP INSTANCE [--tty] [--env NAME=VALUE]... -- SCRIPT [ARG...]
  service    install|client SERVICE [PLATFORM]
  service    provision|backup|restore|clear|destroy SERVICE APP INSTANCE
  status
  packages   PACKAGE...
  setup      [PACKAGE...]
  challenge  put|remove TOKEN      (put: the key authorization on stdin)
  cert       stage|test|commit|unstage HOST ID   (stage: chain and key, PEM, on stdin)
  cert       remove HOST
  cert       list`

// ErrUsage is a command line that does not have the shape of its verb:
// its message is Usage.
var ErrUsage error = usageError{}

type usageError struct{}

func (usageError) Error() string { return Usage }

// MaxLogLines bounds `logs`' line count.
const MaxLogLines = 100000

// Request is one verb with its arguments.
type Request interface {
	// Argv is the request as the words after `gitreceive node`.
	Argv() []string
}

// Target names one instance of an app on a node.
type Target struct {
	App      string
	Instance string
}

func (t Target) words(verb string) []string { return []string{verb, t.App, t.Instance} }

// Release names one release of an instance.
type Release struct {
	Target
	Number int
}

func (r Release) words(verb string) []string {
	return append(r.Target.words(verb), strconv.Itoa(r.Number))
}

// The verbs. Each is its request; the comments say what the agent does.
type (
	// Manifest asks for the current release and its manifest.
	Manifest struct{ Target }
	// Receive builds a release from stdin (the manifest, then a tar of
	// the contents the node lacks); Full: from the stream alone.
	Receive struct {
		Release
		Full bool
	}
	// Start starts a release's vassal from the spec on stdin (Stored: the
	// spec kept from before) and health-checks it.
	Start struct {
		Release
		Stored bool
	}
	// Prepare is phase 1, and phase 2 on a word, in one session: the
	// agent answers as Manifest does, reads a PreparePlan line, and with
	// Go receives as Receive does (the manifest line and a tar, which
	// ends the contents), answers as Receive does, then starts the
	// release from the plan's spec as Start does, printing its lines as
	// PrepareOutput lines, and PrepareStarted. It then waits for the
	// line PrepareSwitch, switches as Activate does, answers
	// PrepareSwitched once nginx routes to the release, and once its input
	// ends goes on with what follows a switch (workers, tidying),
	// printing its warnings as PrepareOutput lines. End of input instead of PrepareSwitch ends the
	// session with the release started but not live.
	Prepare struct{ Release }
	// Activate points current at a release and routes nginx to it.
	Activate struct{ Release }
	// Deactivate undoes an instance's first activation.
	Deactivate struct{ Release }
	// Abort stops and removes a release unless it is current.
	Abort struct{ Release }
	// Releases lists current, previous and present releases.
	Releases struct{ Target }
	// Logs shows the tail of the app, access and error logs (Process:
	// of one worker or cron job's log instead).
	Logs struct {
		Target
		Lines   int
		Follow  bool
		Process string
	}
	// Ps reports the instance's web vassal, workers and cron jobs on
	// the node (JSON).
	Ps struct{ Target }
	// Restart restarts the live release's workers (Names: those only).
	Restart struct {
		Target
		Names []string
	}
	// CronRun runs cron job Name of the live release now, unless its
	// previous run still goes; its output is streamed.
	CronRun struct {
		Target
		Name string
	}
	// SingletonsHold makes the node run the instance's singletons, its
	// cron jobs and workers of nodes = one, (On) or not, whatever the
	// release's spec says: the receiver moves them off a node that is gone
	// or failing.
	SingletonsHold struct {
		Target
		On bool
	}
	// Disable makes an instance answer 503 until enabled.
	Disable struct{ Target }
	// Enable serves a disabled instance again.
	Enable struct{ Target }
	// Destroy removes every trace of an instance from the node.
	Destroy struct{ Target }
	// Run runs a script in the live release as the app would.
	Run struct {
		Target
		TTY    bool
		Env    []string // NAME=VALUE, laid over the release's environment
		Script string
		Args   []string
	}
	// Service acts on a service: install or client (of Platform) for the
	// node, or an operation on one instance's data (Target set).
	Service struct {
		Op       string
		Service  string
		Platform string   // client: whose client packages ("" is python)
		Target   Target   // per-instance operations
		Listen   []string // --listen=ADDR: where app nodes reach a server
	}
	// Status asks for the agent version, free disk and live releases.
	Status struct{}
	// Setup unpacks server-files and runs the setup script, also
	// installing Packages.
	Setup struct{ Packages []string }
	// Packages installs what of an app's packages is missing.
	Packages struct{ Packages []string }
)

// Argv of each verb.
func (r Manifest) Argv() []string   { return r.words("manifest") }
func (r Releases) Argv() []string   { return r.words("releases") }
func (r Disable) Argv() []string    { return r.words("disable") }
func (r Enable) Argv() []string     { return r.words("enable") }
func (r Destroy) Argv() []string    { return r.words("destroy") }
func (r Activate) Argv() []string   { return r.words("activate") }
func (r Deactivate) Argv() []string { return r.words("deactivate") }
func (r Abort) Argv() []string      { return r.words("abort") }
func (r Prepare) Argv() []string    { return r.words("prepare") }
func (Status) Argv() []string       { return []string{"status"} }
func (r Setup) Argv() []string      { return append([]string{"setup"}, r.Packages...) }
func (r Packages) Argv() []string   { return append([]string{"packages"}, r.Packages...) }

func (r Receive) Argv() []string { return withFlag(r.words("receive"), r.Full, "--full") }
func (r Start) Argv() []string   { return withFlag(r.words("start"), r.Stored, "--stored") }

func (r Logs) Argv() []string {
	argv := withFlag(append(r.words("logs"), strconv.Itoa(r.Lines)), r.Follow, "-f")
	if r.Process != "" {
		argv = append(argv, processFlag+r.Process)
	}
	return argv
}

func (r Ps) Argv() []string      { return r.words("ps") }
func (r Restart) Argv() []string { return append(r.words("restart"), r.Names...) }
func (r CronRun) Argv() []string { return append(r.words("cron-run"), r.Name) }

func (r SingletonsHold) Argv() []string {
	if r.On {
		return append(r.words("singletons-hold"), "on")
	}
	return append(r.words("singletons-hold"), "off")
}

// processFlag is logs' --process= flag.
const processFlag = "--process="

func (r Run) Argv() []string {
	argv := withFlag(r.words("run"), r.TTY, "--tty")
	for _, kv := range r.Env {
		argv = append(argv, "--env", kv)
	}
	return append(append(argv, "--", r.Script), r.Args...)
}

// listenFlag is services' --listen= flag (services.ListenArg).
const listenFlag = "--listen="

func (r Service) Argv() []string {
	argv := []string{"service", r.Op, r.Service}
	switch {
	case serviceOps[r.Op]:
		argv = append(argv, r.Target.App, r.Target.Instance)
	case r.Platform != "":
		argv = append(argv, r.Platform)
	}
	for _, l := range r.Listen {
		argv = append(argv, listenFlag+l)
	}
	return argv
}

func withFlag(argv []string, on bool, flag string) []string {
	if on {
		return append(argv, flag)
	}
	return argv
}

// serviceOps are the operations of `service`, with whether they act on one
// instance (APP INSTANCE follow, and stdin starts with its credentials).
var serviceOps = map[string]bool{
	"install": false, "client": false,
	"provision": true, "backup": true, "restore": true, "clear": true, "destroy": true,
}

// PerInstance reports whether the operation acts on one instance's data.
func (r Service) PerInstance() bool { return serviceOps[r.Op] }

// parsers read the words after the verb.
var parsers = map[string]func(args []string) (Request, error){
	"manifest":   targetParser(func(t Target) Request { return Manifest{t} }),
	"releases":   targetParser(func(t Target) Request { return Releases{t} }),
	"disable":    targetParser(func(t Target) Request { return Disable{t} }),
	"enable":     targetParser(func(t Target) Request { return Enable{t} }),
	"destroy":    targetParser(func(t Target) Request { return Destroy{t} }),
	"activate":   releaseParser(func(r Release) Request { return Activate{r} }),
	"deactivate": releaseParser(func(r Release) Request { return Deactivate{r} }),
	"abort":      releaseParser(func(r Release) Request { return Abort{r} }),
	"prepare":    releaseParser(func(r Release) Request { return Prepare{r} }),
	"receive":    flaggedReleaseParser("--full", func(r Release, on bool) Request { return Receive{r, on} }),
	"start":      flaggedReleaseParser("--stored", func(r Release, on bool) Request { return Start{r, on} }),
	"logs":       parseLogs,
	"ps":         targetParser(func(t Target) Request { return Ps{t} }),
	"restart":    parseRestart,
	"cron-run":   parseCronRun,
	"run":        parseRun,
	"service":    parseService,
	"status":     parseStatus,
	"setup":      func(args []string) (Request, error) { p, err := packageList(args); return Setup{p}, err },
	"packages":   parsePackages,
	"challenge":  parseChallenge,
	"cert":       parseCert,

	"singletons-hold": parseSingletonsHold,
}

// Parse reads a command line (the words after `gitreceive node`).
func Parse(args []string) (Request, error) {
	if len(args) == 0 {
		return nil, ErrUsage
	}
	parse, ok := parsers[args[0]]
	if !ok {
		return nil, fmt.Errorf("unknown verb %q\n%s", args[0], Usage)
	}
	return parse(args[1:])
}

// ParseTarget checks APP and INSTANCE.
func ParseTarget(app, instance string) (Target, error) {
	if !names.IsApp(app) || !names.IsInstance(instance) {
		return Target{}, fmt.Errorf("invalid app %q or instance %q", app, instance)
	}
	return Target{App: app, Instance: instance}, nil
}

// ParseNumber checks a release number.
func ParseNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("invalid release number %q", s)
	}
	return n, nil
}

func targetParser(build func(Target) Request) func([]string) (Request, error) {
	return func(args []string) (Request, error) {
		if len(args) != 2 {
			return nil, ErrUsage
		}
		t, err := ParseTarget(args[0], args[1])
		if err != nil {
			return nil, err
		}
		return build(t), nil
	}
}

func parseRelease(args []string) (Release, error) {
	t, err := ParseTarget(args[0], args[1])
	if err != nil {
		return Release{}, err
	}
	n, err := ParseNumber(args[2])
	return Release{Target: t, Number: n}, err
}

func releaseParser(build func(Release) Request) func([]string) (Request, error) {
	return func(args []string) (Request, error) {
		if len(args) != 3 {
			return nil, ErrUsage
		}
		r, err := parseRelease(args)
		if err != nil {
			return nil, err
		}
		return build(r), nil
	}
}

func flaggedReleaseParser(flag string, build func(Release, bool) Request) func([]string) (Request, error) {
	return func(args []string) (Request, error) {
		on := len(args) == 4 && args[3] == flag
		if len(args) != 3 && !on {
			return nil, ErrUsage
		}
		r, err := parseRelease(args)
		if err != nil {
			return nil, err
		}
		return build(r, on), nil
	}
}

func parseLogs(args []string) (Request, error) {
	var process string
	if n := len(args); n > 3 {
		if p, ok := strings.CutPrefix(args[n-1], processFlag); ok {
			if !names.IsProcess(p) {
				return nil, fmt.Errorf("invalid process name %q", p)
			}
			process, args = p, args[:n-1]
		}
	}
	follow := len(args) == 4 && args[3] == "-f"
	if len(args) != 3 && !follow {
		return nil, ErrUsage
	}
	t, err := ParseTarget(args[0], args[1])
	if err != nil {
		return nil, err
	}
	lines, err := strconv.Atoi(args[2])
	if err != nil || lines < 0 || lines > MaxLogLines {
		return nil, fmt.Errorf("invalid line count %q", args[2])
	}
	return Logs{Target: t, Lines: lines, Follow: follow, Process: process}, nil
}

// parseRestart reads `APP INSTANCE [NAME...]`.
func parseRestart(args []string) (Request, error) {
	t, processes, err := processTarget(args)
	return Restart{Target: t, Names: processes}, err
}

// parseCronRun reads `APP INSTANCE NAME`.
func parseCronRun(args []string) (Request, error) {
	if len(args) != 3 {
		return nil, ErrUsage
	}
	t, processes, err := processTarget(args)
	if err != nil {
		return nil, err
	}
	return CronRun{Target: t, Name: processes[0]}, nil
}

// parseSingletonsHold reads `APP INSTANCE on|off`.
func parseSingletonsHold(args []string) (Request, error) {
	if len(args) != 3 || args[2] != "on" && args[2] != "off" {
		return nil, ErrUsage
	}
	t, err := ParseTarget(args[0], args[1])
	if err != nil {
		return nil, err
	}
	return SingletonsHold{Target: t, On: args[2] == "on"}, nil
}

// processTarget reads `APP INSTANCE [NAME...]`, the names those of
// workers or cron jobs (nil when none).
func processTarget(args []string) (Target, []string, error) {
	if len(args) < 2 {
		return Target{}, nil, ErrUsage
	}
	t, err := ParseTarget(args[0], args[1])
	if err != nil {
		return Target{}, nil, err
	}
	var processes []string
	for _, name := range args[2:] {
		if !names.IsProcess(name) {
			return Target{}, nil, fmt.Errorf("invalid process name %q", name)
		}
		processes = append(processes, name)
	}
	return t, processes, nil
}

// parseRun reads `APP INSTANCE [--tty] [--env NAME=VALUE]... -- SCRIPT [ARG...]`.
func parseRun(args []string) (Request, error) {
	if len(args) < 4 {
		return nil, ErrUsage
	}
	t, err := ParseTarget(args[0], args[1])
	if err != nil {
		return nil, err
	}
	r := Run{Target: t}
	rest := args[2:]
	if rest[0] == "--tty" {
		rest, r.TTY = rest[1:], true
	}
	for len(rest) > 1 && rest[0] == "--env" {
		if err := names.CheckEnvAssignment(rest[1]); err != nil {
			return nil, err
		}
		r.Env, rest = append(r.Env, rest[1]), rest[2:]
	}
	if len(rest) < 2 || rest[0] != "--" {
		return nil, ErrUsage
	}
	r.Script = rest[1]
	if len(rest) > 2 {
		r.Args = rest[2:]
	}
	return r, nil
}

// parseService reads `OP SERVICE [PLATFORM | APP INSTANCE] [--listen=ADDR]...`
// (--listen anywhere). The service name is checked by the agent, which
// knows its services.
func parseService(args []string) (Request, error) {
	var r Service
	var rest []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, listenFlag); ok {
			r.Listen = append(r.Listen, v)
			continue
		}
		rest = append(rest, a)
	}
	if len(rest) < 2 {
		return nil, ErrUsage
	}
	r.Op, r.Service = rest[0], rest[1]
	if r.Op == "client" && len(rest) == 3 && (rest[2] == "python" || rest[2] == "php") {
		r.Platform, rest = rest[2], rest[:2]
	}
	perInstance, ok := serviceOps[r.Op]
	if !ok || (perInstance && len(rest) != 4) || (!perInstance && len(rest) != 2) {
		return nil, ErrUsage
	}
	if perInstance {
		t, err := ParseTarget(rest[2], rest[3])
		if err != nil {
			return nil, fmt.Errorf("invalid app or instance name %q %q", rest[2], rest[3])
		}
		r.Target = t
	}
	return r, nil
}

func parseStatus(args []string) (Request, error) {
	if len(args) != 0 {
		return nil, ErrUsage
	}
	return Status{}, nil
}

func parsePackages(args []string) (Request, error) {
	if len(args) == 0 {
		return nil, ErrUsage
	}
	p, err := packageList(args)
	return Packages{p}, err
}

func packageList(args []string) ([]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	for _, p := range args {
		if !names.IsDebianPackage(p) {
			return nil, fmt.Errorf("invalid package name %q", p)
		}
	}
	return args, nil
}

// At is the target APP INSTANCE (checked by the agent's Parse).
func At(app, instance string) Target { return Target{App: app, Instance: instance} }

// Release is release n of t.
func (t Target) Release(n int) Release { return Release{Target: t, Number: n} }

// Verbs are every verb Parse reads, sorted.
func Verbs() []string {
	verbs := make([]string, 0, len(parsers))
	for v := range parsers {
		verbs = append(verbs, v)
	}
	sort.Strings(verbs)
	return verbs
}

// The lines of a Prepare session after the receive's answer. Framing the
// start's output (which holds the app's own, from update_fetch) keeps an
// app from printing the agent's answers.
const (
	PrepareOutput   = "| "        // before each line of output or warning
	PrepareStarted  = "=started"  // the release started and passed its health check
	PrepareSwitch   = "switch"    // the receiver's word to make it live
	PrepareSwitched = "=switched" // nginx routes to it
	// MaxPrepareLine bounds each line, its newline included: the agent
	// cuts longer output into lines of this length.
	MaxPrepareLine = 64 << 10
)

// ReadLine reads one line, its newline included, of at most max bytes
// (max <= 0: any length) from in: both ends of a Prepare session read
// with it. On an error it returns what it read of the line.
func ReadLine(in *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := in.ReadSlice('\n')
		line = append(line, chunk...) // copied: the next read reuses the buffer
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
		if max > 0 && len(line) > max {
			return nil, fmt.Errorf("a line is longer than %d bytes", max)
		}
	}
}

// PreparePlan is the receiver's line after Prepare's first answer: Go
// false (or no line at all) ends the session with nothing done, so that
// the receiver can replace the agent or take a release back first.
type PreparePlan struct {
	Go   bool            `json:"go"`
	Spec json.RawMessage `json:"spec,omitempty"` // the release's spec, as Start reads it
}
