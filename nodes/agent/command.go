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

	"golang.org/x/sys/unix"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/manifest"
	"github.com/gitreceive/gitreceive/names"
	serverfiles "github.com/gitreceive/gitreceive/server-files"
)

// DefaultRoot is where a node keeps the releases of every instance:
// ROOT/APP/INSTANCE/releases/vN, ROOT/APP/INSTANCE/current -> releases/vN.
const DefaultRoot = serverfiles.AppsDir

// RootEnv names the variable that moves the root, so that tests and people
// trying gitreceive out can run the local node without touching /srv.
const RootEnv = "GITRECEIVE_NODE_ROOT"

// Root is $GITRECEIVE_NODE_ROOT, else DefaultRoot.
func Root() string {
	if r := os.Getenv(RootEnv); r != "" {
		return r
	}
	return DefaultRoot
}

// ServerFilesDir is where `setup` unpacks server-files on a node.
const ServerFilesDir = "/usr/local/lib/gitreceive/server-files"

// ExitPreviousDamaged is receive's exit code when the node's current
// release does not match its manifest, so hard links from it cannot be
// trusted: the receiver then sends the whole release (receive --full).
const ExitPreviousDamaged = 3

var errPreviousDamaged = errors.New("the current release does not match its manifest")

var ()

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
}

const usage = `usage: gitreceive node VERB ...
  manifest   APP INSTANCE          the current release and its manifest
  receive    APP INSTANCE N [--full]
  start      APP INSTANCE N [--stored]
  activate   APP INSTANCE N
  deactivate APP INSTANCE N
  abort      APP INSTANCE N
  releases   APP INSTANCE
  logs       APP INSTANCE LINES [-f]
  disable    APP INSTANCE
  enable     APP INSTANCE
  destroy    APP INSTANCE
  run        APP INSTANCE [--tty] [--env NAME=VALUE]... -- SCRIPT [ARG...]
  service    install|client SERVICE [PLATFORM]
  service    provision|backup|restore|clear|destroy SERVICE APP INSTANCE
  status
  setup      [PACKAGE...]
  packages   PACKAGE...`

// Run is `gitreceive node VERB ...`, run by the receiver on a node (over
// SSH, or as a child process on the local node):
//
//	manifest   APP INSTANCE         the current release and its manifest
//	receive    APP INSTANCE N       stdin: one JSON line (the manifest), then a tar of the needed contents;
//	                                --full: build from the stream alone, ignoring the current release
//	start      APP INSTANCE N       stdin: the Spec; start vN's vassal, health-check it, run update_fetch
//	                                (--stored: the spec kept from before, for activating an older release)
//	activate   APP INSTANCE N       point current at vN and route nginx to it (prev.HOST to the one before)
//	deactivate APP INSTANCE N       undo an instance's first activation: no route, no current, no vassal
//	abort      APP INSTANCE N       stop and remove vN unless it is current
//	releases   APP INSTANCE         current, previous and present releases
//	logs       APP INSTANCE LINES   the tail of the app, access and error logs (-f: follow)
//	disable    APP INSTANCE         answer 503 (kept through later deploys) / enable: serve again
//	destroy    APP INSTANCE         remove every trace of the instance from this node
//	run        APP INSTANCE [--tty] [--env NAME=VALUE]... -- SCRIPT [ARG...]
//	                                run a script in the live release as the app would; exits with its code
//	service    OP SERVICE [APP INSTANCE]
//	                                install (server) / client (app-node packages) of a service;
//	                                provision, backup, restore, clear, destroy one instance's data:
//	                                stdin: the credentials (one JSON line), then restore's backup
//	status                          agent version, free disk, live release of every instance
//	setup      [PACKAGE...]         unpack server-files and run the setup script (also installs PACKAGEs)
//	packages   PACKAGE...           install what of an app's packages = is missing (apt, bounded time)
func Run(ctx context.Context, root, version string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "enter" {
		err := Enter(args[1:]) // returns only when it could not exec
		fmt.Fprintf(stderr, "gitreceive node: %v\n", err)
		return 127
	}
	if len(args) > 0 && args[0] == "run" {
		// The script's exit code is the answer; 127 (as shells say
		// "command not found") when it could not be run at all.
		code, err := runVerb(ctx, root, args[1:], stdin, stdout, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "gitreceive node: %v\n", err)
			return 127
		}
		return code
	}
	err := run(ctx, root, version, args, stdin, stdout, stderr)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "gitreceive node: %v\n", err)
	if errors.Is(err, errPreviousDamaged) {
		return ExitPreviousDamaged
	}
	return 1
}

func run(ctx context.Context, root, version string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch verb := args[0]; verb {
	case "service":
		return serviceVerb(ctx, root, args[1:], stdin, stdout)
	case "status":
		if len(args) != 1 {
			return errors.New(usage)
		}
		st, err := status(root, version)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(st)
	case "packages":
		return installPackages(ctx, root, args[1:], stdout)
	case "setup":
		for _, p := range args[1:] {
			if !names.IsDebianPackage(p) {
				return fmt.Errorf("invalid package name %q", p)
			}
		}
		// The local node never had the agent uploaded, so nothing made
		// the agent's directory there yet.
		if err := os.MkdirAll(filepath.Dir(ServerFilesDir), 0o755); err != nil {
			return err
		}
		if err := linkVassalWrapper(stdout); err != nil {
			return err
		}
		return serverfiles.Setup(ctx, ServerFilesDir, args[1:], stdout, stderr)
	case "manifest":
		if len(args) != 3 {
			return errors.New(usage)
		}
		dir, err := instanceDir(root, args[1], args[2])
		if err != nil {
			return err
		}
		cur, m, err := current(dir)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(Status{Agent: version, Release: cur, Manifest: m})
	case "start":
		stored := len(args) == 5 && args[4] == "--stored"
		if len(args) != 4 && !stored {
			return errors.New(usage)
		}
		in, n, err := instanceAndNumber(root, args[1], args[2], args[3])
		if err != nil {
			return err
		}
		// A receiver that hung up will not switch to n: stop its vassal
		// rather than leave it running.
		ctx, cancel := untilHangUp(ctx, stdout)
		defer cancel()
		return in.start(ctx, n, stored, stdin, stdout)
	case "releases":
		if len(args) != 3 {
			return errors.New(usage)
		}
		in, err := openInstance(root, args[1], args[2])
		if err != nil {
			return err
		}
		list, err := in.list()
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(list)
	case "logs":
		follow := len(args) == 5 && args[4] == "-f"
		if len(args) != 4 && !follow {
			return errors.New(usage)
		}
		in, err := openInstance(root, args[1], args[2])
		if err != nil {
			return err
		}
		lines, err := strconv.Atoi(args[3])
		if err != nil || lines < 0 || lines > 100000 {
			return fmt.Errorf("invalid line count %q", args[3])
		}
		return in.logs(ctx, lines, follow, stdout)
	case "destroy":
		if len(args) != 3 {
			return errors.New(usage)
		}
		in, err := openInstance(root, args[1], args[2])
		if err != nil {
			return err
		}
		if in.rt == nil {
			return os.RemoveAll(in.dir)
		}
		return DestroyInstance(ctx, *in.rt, in.app, in.name)
	case "disable", "enable":
		if len(args) != 3 {
			return errors.New(usage)
		}
		in, err := openInstance(root, args[1], args[2])
		if err != nil {
			return err
		}
		return in.setDisabled(ctx, verb == "disable")
	case "activate", "deactivate", "abort":
		if len(args) != 4 {
			return errors.New(usage)
		}
		in, n, err := instanceAndNumber(root, args[1], args[2], args[3])
		if err != nil {
			return err
		}
		switch verb {
		case "activate":
			// A receiver that hangs up before it heard the answer must not
			// leave this node switched: the rest of the fleet goes back.
			ctx, cancel := untilHangUp(ctx, stdout)
			defer cancel()
			return in.activate(ctx, n, stderr)
		case "deactivate":
			return in.deactivate(ctx, n)
		}
		return in.abort(ctx, n)
	case "receive":
		full := len(args) == 5 && args[4] == "--full"
		if len(args) != 4 && !full {
			return errors.New(usage)
		}
		dir, err := instanceDir(root, args[1], args[2])
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(args[3])
		if err != nil || n < 1 {
			return fmt.Errorf("invalid release number %q", args[3])
		}
		st, err := receive(dir, n, stdin, full)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(st)
	}
	return fmt.Errorf("unknown verb %q\n%s", args[0], usage)
}

// instanceAndNumber opens APP INSTANCE and parses release number N.
func instanceAndNumber(root, app, name, number string) (instance, int, error) {
	in, err := openInstance(root, app, name)
	if err != nil {
		return in, 0, err
	}
	n, err := strconv.Atoi(number)
	if err != nil || n < 1 {
		return in, 0, fmt.Errorf("invalid release number %q", number)
	}
	return in, n, nil
}

func instanceDir(root, app, instance string) (string, error) {
	if !names.IsApp(app) || !names.IsInstance(instance) {
		return "", fmt.Errorf("invalid app %q or instance %q", app, instance)
	}
	return filepath.Join(root, app, instance), nil
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
	var line []byte
	for {
		chunk, err := in.ReadSlice('\n')
		line = append(line, chunk...) // copied: the next read reuses the buffer
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return Status{}, fmt.Errorf("reading the manifest: %w", err)
		}
		if len(line) > maxManifest {
			return Status{}, fmt.Errorf("the manifest is larger than %d bytes", maxManifest)
		}
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
	if err := Assemble(dst, prev, have, want, counted); err != nil {
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
			cur, _, err := current(filepath.Join(root, a.Name(), i.Name()))
			if err != nil {
				return st, fmt.Errorf("%s/%s: %w", a.Name(), i.Name(), err)
			}
			st.Instances = append(st.Instances, Instance{App: a.Name(), Instance: i.Name(), Release: cur})
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

// runVerb is `run APP INSTANCE [--tty] -- SCRIPT [ARG...]`: the script in
// the live release, as the app runs.
func runVerb(ctx context.Context, root string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(args) < 4 {
		return 0, errors.New(usage)
	}
	in, err := openInstance(root, args[0], args[1])
	if err != nil {
		return 0, err
	}
	rest, tty := args[2:], false
	if rest[0] == "--tty" {
		rest, tty = rest[1:], true
	}
	var env []string // --env NAME=VALUE: laid over the release's environment
	for len(rest) > 1 && rest[0] == "--env" {
		if err := names.CheckEnvAssignment(rest[1]); err != nil {
			return 0, err
		}
		env, rest = append(env, rest[1]), rest[2:]
	}
	if len(rest) < 2 || rest[0] != "--" {
		return 0, errors.New(usage)
	}
	if in.rt == nil {
		return 0, fmt.Errorf("nothing runs here: %s moves the releases away from the app's runtime", RootEnv)
	}
	// A client that went away must stop the script. sshd refuses SSH
	// signal requests for root logins, but closes our output when the
	// session ends: that is the hang-up to watch for.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f, ok := stdout.(*os.File); ok && !tty {
		go watchHangUp(f, cancel)
	}
	live, _, err := current(in.dir)
	if err != nil {
		return 0, err
	}
	if live == 0 {
		return 0, fmt.Errorf("%s@%s has no live release on this node; push it first", in.app, in.name)
	}
	return RunScript(ctx, *in.rt, in.app, in.name, live, rest[1], rest[2:], env, stdin, stdout, stderr, tty)
}

// untilHangUp is ctx, also cancelled once nobody reads stdout any more
// (watchHangUp) when it is a pipe or socket.
func untilHangUp(ctx context.Context, stdout io.Writer) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if f, ok := stdout.(*os.File); ok {
		go watchHangUp(f, cancel)
	}
	return ctx, cancel
}

// watchHangUp calls hangUp once nobody reads f any more: the other end of
// the pipe or socket closed (POLLHUP/POLLERR; a mere end of our input,
// which shuts one direction of sshd's socket, is not that).
func watchHangUp(f *os.File, hangUp func()) {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket) == 0 {
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
