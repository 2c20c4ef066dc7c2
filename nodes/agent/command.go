package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// DefaultRoot is where a node keeps the releases of every instance:
// ROOT/APP/INSTANCE/releases/vN, ROOT/APP/INSTANCE/current -> releases/vN.
const DefaultRoot = "/srv/gitreceive/apps"

var (
	appName      = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	instanceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._%-]{0,199}$`)
)

// Status is the agent's answer: one JSON line on stdout.
type Status struct {
	Agent    string   `json:"agent,omitempty"`    // manifest: the agent's version, so the receiver knows whether to upgrade it
	Release  int      `json:"release"`            // current (manifest) or built (receive) release; 0 = none
	Manifest Manifest `json:"manifest,omitempty"` // manifest: the current release's files
	Files    int      `json:"files,omitempty"`
	Received int64    `json:"received,omitempty"` // bytes of content received
}

// Run is `gitreceive node VERB APP INSTANCE [N]`, run by the receiver over
// SSH on a node:
//
//	manifest APP INSTANCE     the current release and its manifest
//	receive  APP INSTANCE N   stdin: one JSON line (the manifest), then a tar of the needed contents
//	activate APP INSTANCE N   point current at vN (atomic rename of a symlink)
//	abort    APP INSTANCE N   remove vN unless it is current
func Run(root, version string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if err := run(root, version, args, stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "gitreceive node: %v\n", err)
		return 1
	}
	return 0
}

func run(root, version string, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 3 {
		return errors.New("usage: gitreceive node manifest|receive|activate|abort APP INSTANCE [N]")
	}
	verb, app, instance := args[0], args[1], args[2]
	if !appName.MatchString(app) || !instanceName.MatchString(instance) {
		return fmt.Errorf("invalid app %q or instance %q", app, instance)
	}
	dir := filepath.Join(root, app, instance)
	n := 0
	if verb != "manifest" {
		if len(args) != 4 {
			return fmt.Errorf("usage: gitreceive node %s APP INSTANCE N", verb)
		}
		var err error
		if n, err = strconv.Atoi(args[3]); err != nil || n < 1 {
			return fmt.Errorf("invalid release number %q", args[3])
		}
	} else if len(args) != 3 {
		return errors.New("usage: gitreceive node manifest APP INSTANCE")
	}
	switch verb {
	case "manifest":
		cur, m, err := current(dir)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(Status{Agent: version, Release: cur, Manifest: m})
	case "receive":
		st, err := receive(dir, n, stdin)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(st)
	case "activate":
		return activate(dir, n)
	case "abort":
		cur, _, err := current(dir)
		if err != nil {
			return err
		}
		if cur == n {
			return fmt.Errorf("v%d is live; it cannot be aborted", n)
		}
		os.Remove(manifestPath(dir, n))
		return os.RemoveAll(releaseDir(dir, n))
	}
	return fmt.Errorf("unknown verb %q", verb)
}

func releaseDir(dir string, n int) string   { return filepath.Join(dir, "releases", "v"+strconv.Itoa(n)) }
func manifestPath(dir string, n int) string { return releaseDir(dir, n) + ".manifest.json" }

// current reads the live release number and its manifest (0, nil: none).
func current(dir string) (int, Manifest, error) {
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
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return 0, nil, fmt.Errorf("manifest of v%d: %w", n, err)
	}
	return n, m, nil
}

// maxManifest bounds the manifest line read from the receiver.
const maxManifest = 256 << 20

// receive builds vN from the current release and the stream, replacing a
// leftover vN of an interrupted deploy (never the live one).
func receive(dir string, n int, stdin io.Reader) (Status, error) {
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
	var want Manifest
	if err := json.Unmarshal(line, &want); err != nil {
		return Status{}, fmt.Errorf("reading the manifest: %w", err)
	}
	cur, have, err := current(dir)
	if err != nil {
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
	if cur > 0 {
		prev = releaseDir(dir, cur)
	}
	counted := &countingReader{r: in}
	if err := Assemble(dst, prev, have, want, counted); err != nil {
		return Status{}, err
	}
	data, err := json.Marshal(want)
	if err != nil {
		return Status{}, err
	}
	if err := writeAtomic(manifestPath(dir, n), data); err != nil {
		os.RemoveAll(dst)
		return Status{}, err
	}
	return Status{Release: n, Files: len(want), Received: counted.n}, nil
}

// activate points current at vN with a symlink renamed over the old one,
// so readers always see one release or the other.
func activate(dir string, n int) error {
	if _, err := os.Stat(manifestPath(dir, n)); err != nil {
		return fmt.Errorf("v%d was not received here: %w", n, err)
	}
	tmp := filepath.Join(dir, ".current.new")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Join("releases", "v"+strconv.Itoa(n)), tmp); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "current"))
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
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
