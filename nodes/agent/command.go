package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/manifest"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
	serverfiles "github.com/gitreceive/gitreceive/server-files"
)

// defaultRoot is where a node keeps the releases of every instance:
// ROOT/APP/INSTANCE/releases/vN, ROOT/APP/INSTANCE/current -> releases/vN.
const defaultRoot = serverfiles.AppsDir

// RootEnv names the variable that moves the root, so that tests and people
// trying gitreceive out can run the local node without touching /srv.
const RootEnv = "GITRECEIVE_NODE_ROOT"

// Root is $GITRECEIVE_NODE_ROOT, else defaultRoot.
func Root() string {
	if r := os.Getenv(RootEnv); r != "" {
		return r
	}
	return defaultRoot
}

// serverFilesDir is where `setup` unpacks server-files on a node.
const serverFilesDir = "/usr/local/lib/gitreceive/server-files"

// ExitPreviousDamaged is receive's exit code when the node's current
// release does not match its manifest, so hard links from it cannot be
// trusted: the receiver then sends the whole release (receive --full).
const ExitPreviousDamaged = 3

var errPreviousDamaged = errors.New("the current release does not match its manifest")

// Status is the agent's answer: one JSON line on stdout.
type Status struct {
	Agent    string            `json:"agent,omitempty"`    // manifest: the agent's version, so the receiver knows whether to upgrade it
	Release  int               `json:"release"`            // current (manifest) or built (receive) release; 0 = none
	Manifest manifest.Manifest `json:"manifest,omitempty"` // manifest: the current release's files
	Files    int               `json:"files,omitempty"`
	Received int64             `json:"received,omitempty"` // bytes of content received
}

// NodeStatus is the answer to `status`: what `nodes check` shows.
type NodeStatus struct {
	Agent     string     `json:"agent"`
	FreeDisk  int64      `json:"free_disk"` // bytes free where releases live
	Instances []Instance `json:"instances"`
}

// Instance is one instance's live release on a node.
type Instance struct {
	App      string `json:"app"`
	Instance string `json:"instance"`
	Release  int    `json:"release"` // 0: received but never activated
	// CrashLoops names the live release's workers that are in a crash
	// loop here or cannot start (as ps reports them), each once.
	CrashLoops []string `json:"crash_loops,omitempty"`
}

// Run is `gitreceive node VERB ...`, run by the receiver on a node (over
// SSH, or as a child process on the local node): the verbs are package
// agentapi's requests. `run`'s answer is its script's exit code; the
// others answer 0, ExitPreviousDamaged, or 1 with a message on stderr.
func Run(ctx context.Context, root, version string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "enter" {
		err := enter(args[1:]) // returns only when it could not exec
		fmt.Fprintf(stderr, "gitreceive node: %v\n", err)
		return 127
	}
	req, err := agentapi.Parse(args)
	if run, ok := req.(agentapi.Run); ok && err == nil {
		// The script's exit code is the answer; 127 (as shells say
		// "command not found") when it could not be run at all.
		code, err := runVerb(ctx, root, run, stdin, stdout, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "gitreceive node: %v\n", err)
			return 127
		}
		return code
	}
	if err == nil {
		c := &call{root: root, version: version, stdin: stdin, stdout: stdout, stderr: stderr}
		err = handlers[req.Argv()[0]](ctx, c, req)
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "gitreceive node: %v\n", err)
	if errors.Is(err, errPreviousDamaged) {
		return ExitPreviousDamaged
	}
	if len(args) > 0 && args[0] == "run" {
		return 127
	}
	return 1
}

// call is one run of the agent: where it works and its standard streams.
type call struct {
	root, version  string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// handler answers one verb's request.
type handler func(ctx context.Context, c *call, req agentapi.Request) error

// handle makes a handler of a function of one request type.
func handle[R agentapi.Request](f func(context.Context, *call, R) error) handler {
	return func(ctx context.Context, c *call, req agentapi.Request) error { return f(ctx, c, req.(R)) }
}

// handlers answer every verb but run (its answer is an exit code).
var handlers = map[string]handler{
	"service":  handle(serviceVerb),
	"status":   handle(statusVerb),
	"packages": handle(packagesVerb),
	"setup":    handle(setupVerb),
	"manifest": handle(manifestVerb),
	"receive":  handle(receiveVerb),
	"start":    handle(startVerb),
	"prepare":  handle(prepareVerb),
	"releases": handle(releasesVerb),
	"logs":     handle(logsVerb),
	"ps":       handle(psVerb),
	"restart":  handle(restartVerb),
	"cron-run": handle(cronRunVerb),
	"destroy":  handle(destroyVerb),
	"disable": handle(func(ctx context.Context, c *call, r agentapi.Disable) error {
		return c.setDisabled(ctx, r.Target, true)
	}),
	"enable": handle(func(ctx context.Context, c *call, r agentapi.Enable) error {
		return c.setDisabled(ctx, r.Target, false)
	}),
	"activate":   handle(activateVerb),
	"deactivate": handle(deactivateVerb),
	"abort":      handle(abortVerb),
	"challenge":  handle(challengeVerb),
	"cert":       handle(certVerb),

	// The receiver moves the singletons (singletons.go).
	"singletons-hold": handle(singletonsHoldVerb),
}

func statusVerb(_ context.Context, c *call, _ agentapi.Status) error {
	st, err := status(c.root, c.version)
	if err != nil {
		return err
	}
	return json.NewEncoder(c.stdout).Encode(st)
}

func packagesVerb(ctx context.Context, c *call, r agentapi.Packages) error {
	return installPackages(ctx, c.root, r.Packages, c.stdout)
}

func setupVerb(ctx context.Context, c *call, r agentapi.Setup) error {
	// The local node never had the agent uploaded, so nothing made the
	// agent's directory there yet.
	if err := os.MkdirAll(filepath.Dir(serverFilesDir), 0o755); err != nil {
		return err
	}
	if err := linkVassalWrapper(c.stdout); err != nil {
		return err
	}
	return serverfiles.Setup(ctx, serverFilesDir, r.Packages, c.stdout, c.stderr)
}

func manifestVerb(_ context.Context, c *call, r agentapi.Manifest) error {
	cur, m, err := current(instanceDir(c.root, r.Target))
	if err != nil {
		return err
	}
	return json.NewEncoder(c.stdout).Encode(Status{Agent: c.version, Release: cur, Manifest: m})
}

func receiveVerb(_ context.Context, c *call, r agentapi.Receive) error {
	st, err := receive(instanceDir(c.root, r.Target), r.Number, c.stdin, r.Full)
	if err != nil {
		return err
	}
	return json.NewEncoder(c.stdout).Encode(st)
}

func startVerb(ctx context.Context, c *call, r agentapi.Start) error {
	// A receiver that hung up will not switch to the release: stop its
	// vassal rather than leave it running.
	ctx, cancel := untilHangUp(ctx, c.stdout)
	defer cancel()
	return c.instance(r.Target).start(ctx, r.Number, r.Stored, c.stdin, c.stdout)
}

func releasesVerb(_ context.Context, c *call, r agentapi.Releases) error {
	list, err := c.instance(r.Target).list()
	if err != nil {
		return err
	}
	return json.NewEncoder(c.stdout).Encode(list)
}

func logsVerb(ctx context.Context, c *call, r agentapi.Logs) error {
	return c.instance(r.Target).logs(ctx, r.Lines, r.Follow, r.Process, c.stdout)
}

func destroyVerb(ctx context.Context, c *call, r agentapi.Destroy) error {
	in := c.instance(r.Target)
	if in.rt == nil {
		return os.RemoveAll(in.dir)
	}
	return in.runtime().destroy(ctx)
}

func (c *call) setDisabled(ctx context.Context, t agentapi.Target, disabled bool) error {
	return c.instance(t).setDisabled(ctx, disabled)
}

func activateVerb(ctx context.Context, c *call, r agentapi.Activate) error {
	// A receiver that hangs up before it heard the answer must not leave
	// this node switched: the rest of the fleet goes back.
	ctx, cancel := untilHangUp(ctx, c.stdout)
	defer cancel()
	return c.instance(r.Target).activate(ctx, r.Number, c.stderr)
}

func deactivateVerb(ctx context.Context, c *call, r agentapi.Deactivate) error {
	return c.instance(r.Target).deactivate(ctx, r.Number)
}

func abortVerb(ctx context.Context, c *call, r agentapi.Abort) error {
	return c.instance(r.Target).abort(ctx, r.Number)
}

// instanceDir is where an instance's releases live under root.
func instanceDir(root string, t agentapi.Target) string {
	return filepath.Join(root, t.App, t.Instance)
}

func releaseDir(dir string, n int) string   { return filepath.Join(dir, "releases", "v"+strconv.Itoa(n)) }
func manifestPath(dir string, n int) string { return releaseDir(dir, n) + ".manifest.json" }

// current reads the live release number and its manifest (0, nil: none).
func current(dir string) (int, manifest.Manifest, error) {
	target, err := os.Readlink(filepath.Join(dir, "current"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(target), "v"))
	if err != nil {
		return 0, nil, fmt.Errorf("current points at %q", target)
	}
	data, err := os.ReadFile(manifestPath(dir, n))
	if err != nil {
		return 0, nil, err
	}
	var m manifest.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return 0, nil, fmt.Errorf("manifest of v%d: %w", n, err)
	}
	return n, m, nil
}

// maxManifest bounds the manifest line read from the receiver.
const maxManifest = 256 << 20

// receive builds vN from the current release and the stream, replacing a
// leftover vN of an interrupted deploy (never the live one). With full, the
// stream holds every content and the current release is not used.
func receive(dir string, n int, stdin io.Reader, full bool) (Status, error) {
	in := bufio.NewReaderSize(stdin, 1<<16)
	line, err := agentapi.ReadLine(in, maxManifest)
	if err != nil {
		return Status{}, fmt.Errorf("reading the manifest: %w", err)
	}
	var want manifest.Manifest
	if err := json.Unmarshal(line, &want); err != nil {
		return Status{}, fmt.Errorf("reading the manifest: %w", err)
	}
	cur, have, err := current(dir)
	if err != nil && !full {
		return Status{}, err
	}
	if cur == n {
		return Status{}, fmt.Errorf("v%d is already live", n)
	}
	if err := os.MkdirAll(filepath.Join(dir, "releases"), 0o755); err != nil {
		return Status{}, err
	}
	dst := releaseDir(dir, n)
	if err := os.RemoveAll(dst); err != nil {
		return Status{}, err
	}
	prev := ""
	if cur > 0 && !full {
		prev = releaseDir(dir, cur)
	} else {
		have = nil
	}
	counted := &countingReader{r: in}
	if err := assemble(dst, prev, have, want, counted); err != nil {
		// Linking from a release that was changed on the node fails in
		// ways the receiver can repair by sending everything: say so.
		if prev != "" && verify(prev, have, allProven(have)) != nil {
			return Status{}, fmt.Errorf("%w (v%d): %v", errPreviousDamaged, cur, err)
		}
		return Status{}, err
	}
	data, err := json.Marshal(want)
	if err != nil {
		return Status{}, err
	}
	if err := atomicfile.Write(manifestPath(dir, n), data, 0o644); err != nil {
		os.RemoveAll(dst)
		return Status{}, err
	}
	return Status{Release: n, Files: len(want), Received: counted.n}, nil
}

// allProven marks every file of m proven: verify then checks presence,
// type, mode and size only, which is cheap.
func allProven(m manifest.Manifest) map[string]bool {
	p := make(map[string]bool, len(m))
	for _, f := range m {
		p[f.Path] = true
	}
	return p
}

// status lists every instance under root with its live release.
func status(root, version string) (NodeStatus, error) {
	st := NodeStatus{Agent: version, Instances: []Instance{}}
	now := time.Now()
	apps, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return st, err
	}
	for _, a := range apps {
		if !a.IsDir() || !names.IsApp(a.Name()) {
			continue
		}
		insts, err := os.ReadDir(filepath.Join(root, a.Name()))
		if err != nil {
			return st, err
		}
		for _, i := range insts {
			if !i.IsDir() || !names.IsInstance(i.Name()) {
				continue
			}
			dir := filepath.Join(root, a.Name(), i.Name())
			cur, _, err := current(dir)
			if err != nil {
				return st, fmt.Errorf("%s/%s: %w", a.Name(), i.Name(), err)
			}
			st.Instances = append(st.Instances, Instance{App: a.Name(), Instance: i.Name(), Release: cur, CrashLoops: crashLoops(dir, cur, now)})
		}
	}
	// Free space where releases go: root, or the nearest directory that
	// exists before the first deploy creates it.
	dir := root
	for {
		var fsst syscall.Statfs_t
		if err := syscall.Statfs(dir, &fsst); err == nil {
			st.FreeDisk = int64(fsst.Bavail) * int64(fsst.Bsize)
			return st, nil
		}
		if parent := filepath.Dir(dir); parent != dir {
			dir = parent
			continue
		}
		return st, fmt.Errorf("cannot find free space under %s", root)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// runVerb is `run APP INSTANCE [--tty] [--env NAME=VALUE]... -- SCRIPT
// [ARG...]`: the script in the live release, as the app runs.
func runVerb(ctx context.Context, root string, r agentapi.Run, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	in := openInstance(root, r.Target)
	if in.rt == nil {
		return 0, fmt.Errorf("nothing runs here: %s moves the releases away from the app's runtime", RootEnv)
	}
	// A client that went away must stop the script. sshd refuses SSH
	// signal requests for root logins, but closes our output when the
	// session ends: that is the hang-up to watch for.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f, ok := stdout.(*os.File); ok && !r.TTY {
		go watchHangUp(f, cancel)
	}
	live, _, err := current(in.dir)
	if err != nil {
		return 0, err
	}
	if live == 0 {
		return 0, fmt.Errorf("%s@%s has no live release on this node; push it first", in.app, in.name)
	}
	return in.runtime().runScript(ctx, live, scriptRun{name: r.Script, args: r.Args, env: r.Env, tty: r.TTY}, stdin, stdout, stderr)
}

// untilHangUp is ctx, also cancelled once nobody reads stdout any more
// (watchHangUp) when it is a pipe or socket.
func untilHangUp(ctx context.Context, stdout io.Writer) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if f, ok := stdout.(*os.File); ok && isPipeOrSocket(f) {
		go watchHangUp(f, cancel)
		ctx = context.WithValue(ctx, hangUpKey{}, f)
	}
	return ctx, cancel
}

// hangUpKey holds, in a context from untilHangUp, the output it watches.
type hangUpKey struct{}

// receiverGone reports whether ctx ended or the receiver hung up on the
// output untilHangUp watches, asked now: the watcher may not have woken
// yet when a switch that took no time (a rename) ends right after the
// hang-up.
func receiverGone(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	f, ok := ctx.Value(hangUpKey{}).(*os.File)
	if !ok {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(f.Fd())}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0
}

func isPipeOrSocket(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket) != 0
}

// watchHangUp calls hangUp once nobody reads f any more: the other end of
// the pipe or socket closed (POLLHUP/POLLERR; a mere end of our input,
// which shuts one direction of sshd's socket, is not that).
func watchHangUp(f *os.File, hangUp func()) {
	if !isPipeOrSocket(f) {
		return
	}
	fds := []unix.PollFd{{Fd: int32(f.Fd())}}
	for {
		n, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil || (n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0) {
			hangUp()
			return
		}
	}
}
