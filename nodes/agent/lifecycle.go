package agent

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

// instance is one APP/INSTANCE on this node. rt is nil when the agent's
// root was moved (GITRECEIVE_NODE_ROOT): nginx and the emperor only know
// the system paths, so releases there are placed and switched but not
// served. Tests of the pipeline and non-root trials use that.
type instance struct {
	app, name string
	dir       string
	rt        *Runtime
}

func openInstance(root string, t agentapi.Target) instance {
	in := instance{app: t.App, name: t.Instance, dir: instanceDir(root, t)}
	if root == defaultRoot {
		rt := SystemRuntime()
		in.rt = &rt
	}
	return in
}

// instance is the instance a request names, under the call's root.
func (c *call) instance(t agentapi.Target) instance { return openInstance(c.root, t) }

// maxSpec bounds the spec read from the receiver.
const maxSpec = 1 << 20

// start starts release n: with stored, from the spec kept when it was
// first started (activate of an older release); else from the spec on
// stdin, which is kept for later.
func (in instance) start(ctx context.Context, n int, stored bool, stdin io.Reader, out io.Writer) error {
	if _, err := os.Stat(manifestPath(in.dir, n)); err != nil {
		return fmt.Errorf("v%d is not on this node (only the newest releases are kept); push again", n)
	}
	var spec Spec
	if stored {
		s, err := in.spec(n)
		if err != nil {
			return err
		}
		spec = s
	} else {
		data, err := io.ReadAll(io.LimitReader(stdin, maxSpec+1))
		if err != nil {
			return fmt.Errorf("reading the spec: %w", err)
		}
		if len(data) > maxSpec {
			return fmt.Errorf("the spec is larger than %d bytes", maxSpec)
		}
		if err := json.Unmarshal(data, &spec); err != nil {
			return fmt.Errorf("reading the spec: %w", err)
		}
		if err := spec.Validate(); err != nil {
			return err
		}
		// 0600: the spec holds the app's environment (config values).
		if err := atomicfile.Write(specPath(in.dir, n), data, 0o600); err != nil {
			return err
		}
		// A deploy gives the singletons to its first node again (Spec.Singletons).
		os.Remove(singletonsHoldPath(in.dir))
	}
	if in.rt == nil {
		fmt.Fprintf(out, "not served: %s moves the releases away from nginx and uWSGI\n", RootEnv)
		return nil
	}
	if _, err := os.Stat(in.rt.VassalsDir); err != nil {
		return fmt.Errorf("not set up to serve apps (no %s); run `gitreceive nodes setup` for this node on the receiver", in.rt.VassalsDir)
	}
	return in.runtime().startRelease(ctx, n, spec, out)
}

// spec reads release n's kept spec.
func (in instance) spec(n int) (Spec, error) { return readSpec(in.dir, n) }

// readSpec reads release n's kept spec in the instance directory dir.
func readSpec(dir string, n int) (Spec, error) {
	var spec Spec
	data, err := os.ReadFile(specPath(dir, n))
	if err != nil {
		return spec, fmt.Errorf("v%d has no spec on this node: %w", n, err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return spec, fmt.Errorf("spec of v%d: %w", n, err)
	}
	return spec, spec.Validate()
}

// activate makes release n live: current points at it, the route links
// send the instance's locations to it and prev.HOST to the release live
// before it (a rename each, nginx reloaded only when the instance's hosts
// or locations changed: it then says why on warn), whose vassal is
// demoted to a cheap one; every other vassal of the instance stops, and
// releases beyond the spec's KeepReleases are removed.
//
// Its exit code says whether nginx routes to n: on failure, and when ctx
// ends before routing is done (the receiver hung up, so it cannot learn
// that this node switched), routing and the current and previous links go
// back to what they were.
// Once n is routed, the tidying that follows cannot undo the switch: its
// failures are warnings on warn.
func (in instance) activate(ctx context.Context, n int, warn io.Writer) error {
	prev, reloaded, err := in.switchTo(ctx, n)
	if err != nil {
		return err
	}
	in.afterSwitch(ctx, n, prev, reloaded, warn, nil)
	return nil
}

// switchTo is activate's switch: current, previous and the routing
// pointed at n, or, on failure or when the receiver went away before it
// was done, all back as they were. It returns the release now at
// prev.HOST and, when nginx was reloaded, why.
func (in instance) switchTo(ctx context.Context, n int) (prev int, reloaded string, err error) {
	if _, err := os.Stat(manifestPath(in.dir, n)); err != nil {
		return 0, "", fmt.Errorf("v%d was not received here: %w", n, err)
	}
	old, _, err := current(in.dir)
	if err != nil {
		return 0, "", err
	}
	oldPrev := readLink(in.dir, "previous")
	prev = oldPrev
	if old != n && old > 0 {
		prev = old
	}
	if prev == n {
		prev = 0
	}
	// Both links before routing, which may wait for the routing lock: a
	// disk that fills meanwhile cannot leave previous stale behind a
	// switch that went through (take-backs go to previous).
	if err := setLink(in.dir, "current", n); err != nil {
		return 0, "", err
	}
	if err := setLink(in.dir, "previous", prev); err != nil {
		_ = in.setCurrent(old)
		return 0, "", fmt.Errorf("recording v%d as the previous release: %w", prev, err)
	}
	if in.rt != nil {
		var spec Spec
		if spec, err = in.spec(n); err == nil {
			reloaded, err = in.runtime().route(ctx, n, prev, spec, in.disabled())
		}
	}
	gone := receiverGone(ctx)
	if err != nil && !gone {
		// Back to what served before: the switch did not happen (Route
		// leaves nginx as it was when it fails).
		_ = in.setCurrent(old)
		_ = setLink(in.dir, "previous", oldPrev)
		return 0, "", err
	}
	if gone {
		// The receiver went away, so it cannot learn whether this node
		// switched, and will switch the others back: nginx may route to n
		// already, and goes back too.
		if err == nil {
			err = fmt.Errorf("the receiver went away while v%d was being switched to: %w", n, cmp.Or(ctx.Err(), context.Canceled))
		}
		if undoErr := in.switchBack(ctx, old, oldPrev); undoErr != nil {
			return 0, "", fmt.Errorf("%w; and switching back to v%d failed: %v", err, old, undoErr)
		}
		return 0, "", err
	}
	return prev, reloaded, nil
}

// afterSwitch is what follows a switch to n: the reload said on warn,
// then answered (when answer is set: the receiver learns that n is live
// before the rest, which it does not wait for to go on), then the
// workers switched and older releases tidied, their failures warnings
// on warn: neither undoes the switch.
func (in instance) afterSwitch(ctx context.Context, n, prev int, reloaded string, warn io.Writer, answer func() error) {
	if reloaded != "" {
		// Most switches only rename links; the pusher learns when one
		// touched every app on the node.
		fmt.Fprintf(warn, "nginx reloaded: %s\n", reloaded)
	}
	if answer != nil && answer() != nil {
		return // the receiver is gone: it will switch this node back
	}
	if in.rt != nil {
		in.switchWorkers(ctx, n, warn)
	}
	if err := in.tidy(ctx, n, prev); err != nil {
		fmt.Fprintf(warn, "warning: v%d is live, but tidying older releases failed: %v\n", n, err)
	}
}

// switchBack points current and nginx at release old again (0: no
// release, no route), with prev at prev.HOST, whatever ctx says.
func (in instance) switchBack(ctx context.Context, old, prev int) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), switchBackTimeout)
	defer cancel()
	if err := in.setCurrent(old); err != nil {
		return err
	}
	if err := setLink(in.dir, "previous", prev); err != nil || in.rt == nil {
		return err
	}
	if old == 0 {
		return in.runtime().unroute(ctx)
	}
	spec, err := in.spec(old)
	if err != nil {
		return err
	}
	_, err = in.runtime().route(ctx, old, prev, spec, in.disabled())
	return err
}

// setCurrent points current at release n (0: removes it).
func (in instance) setCurrent(n int) error { return setLink(in.dir, "current", n) }

// switchBackTimeout bounds switchBack, which runs after ctx may have ended.
const switchBackTimeout = 30 * time.Second

// demoteOrRetire demotes prev's vassal, unless it still runs as the shared
// user of earlier versions: that one is stopped (prev.HOST answers again
// after the next deploy), and the instance's directories are closed to
// everyone else now that nothing of that user serves it.
func (in instance) demoteOrRetire(ctx context.Context, prev int) error {
	t, err := in.runtime().instanceUser(false)
	if err != nil {
		return err
	}
	legacy := in.runtime().legacyVassals(t)
	if !slices.Contains(legacy, prev) {
		if err := in.runtime().demoteRelease(ctx, prev); err != nil {
			return err
		}
	} else if err := in.runtime().stopRelease(ctx, prev); err != nil {
		return err
	}
	if len(legacy) == 0 {
		return nil
	}
	return in.runtime().closeInstanceDirs(t)
}

// tidy keeps the vassals of live and prev only (prev demoted to a cheap
// one) and the newest KeepReleases releases, live and prev always among
// them.
func (in instance) tidy(ctx context.Context, live, prev int) error {
	keep := DefaultKeepReleases
	if spec, err := in.spec(live); err == nil {
		keep = spec.WithDefaults().KeepReleases
	}
	all := in.releases()
	if in.rt != nil {
		for _, r := range all {
			// A release with neither a vassal file nor a socket is not
			// running (stopRelease removes both): asking the emperor about
			// each of them would only lengthen the switch.
			if r != live && r != prev && in.runtime().mayRun(r) {
				if err := in.runtime().stopRelease(ctx, r); err != nil {
					return err
				}
			}
		}
		if prev > 0 {
			if err := in.demoteOrRetire(ctx, prev); err != nil {
				return err
			}
		}
	}
	kept := 0 // newest first; live and prev are always kept and count
	for i := len(all) - 1; i >= 0; i-- {
		switch r := all[i]; {
		case r == live || r == prev || kept < keep:
			kept++
		default:
			in.remove(r)
		}
	}
	return nil
}

// releases lists the release numbers present, oldest first.
func (in instance) releases() []int {
	entries, _ := os.ReadDir(filepath.Join(in.dir, "releases"))
	var out []int
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".manifest.json")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimPrefix(name, "v")); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// remove deletes release n's files (its vassal must be stopped).
func (in instance) remove(n int) {
	os.Remove(manifestPath(in.dir, n))
	os.Remove(specPath(in.dir, n))
	os.RemoveAll(releaseDir(in.dir, n))
}

// deactivate takes an instance whose first release n was switched on back
// to nothing: no route, no current, no vassal.
func (in instance) deactivate(ctx context.Context, n int) error {
	cur, _, err := current(in.dir)
	if err != nil {
		return err
	}
	if cur != n {
		return fmt.Errorf("v%d is not live (current is v%d)", n, cur)
	}
	if in.rt != nil {
		if err := in.runtime().unroute(ctx); err != nil {
			return err
		}
		if err := in.runtime().stopWorkers(ctx, n); err != nil {
			return err
		}
		if err := in.runtime().stopRelease(ctx, n); err != nil {
			return err
		}
	}
	os.Remove(filepath.Join(in.dir, "previous"))
	return os.Remove(filepath.Join(in.dir, "current"))
}

// abort stops and removes release n, which must not be live. When n was
// the one kept at prev.HOST (an undone switch), the newest older release
// takes its place.
func (in instance) abort(ctx context.Context, n int) error {
	cur, _, err := current(in.dir)
	if err != nil {
		return err
	}
	if cur == n {
		return fmt.Errorf("v%d is live; it cannot be aborted", n)
	}
	if in.rt != nil {
		if err := in.runtime().stopWorkers(ctx, n); err != nil {
			return err
		}
		if err := in.runtime().stopRelease(ctx, n); err != nil {
			return err
		}
	}
	in.remove(n)
	if readLink(in.dir, "previous") != n {
		return nil
	}
	prev := 0
	for _, r := range in.releases() {
		if r < cur {
			prev = r
		}
	}
	if in.rt != nil && cur > 0 {
		spec, err := in.spec(cur)
		if err == nil {
			_, err = in.runtime().route(ctx, cur, prev, spec, in.disabled())
		}
		if err != nil {
			return err
		}
		if prev > 0 {
			if err := in.demoteOrRetire(ctx, prev); err != nil {
				return err
			}
		}
	}
	return setLink(in.dir, "previous", prev)
}

// readLink is the release a link (current, previous) points at; 0: none.
func readLink(dir, name string) int {
	target, err := os.Readlink(filepath.Join(dir, name))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(target), "v"))
	return n
}

// setLink points dir/name at release n (0: removes it) with a symlink
// renamed over the old one, so readers always see one or the other.
func setLink(dir, name string, n int) error {
	link := filepath.Join(dir, name)
	if n == 0 {
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return replaceLink(link, filepath.Join("releases", "v"+strconv.Itoa(n)))
}

// list says which releases this node holds.
func (in instance) list() (Releases, error) {
	cur, _, err := current(in.dir)
	if err != nil {
		return Releases{}, err
	}
	return Releases{Current: cur, Previous: readLink(in.dir, "previous"), Present: in.releases()}, nil
}

// logs prints the last lines of the instance's logs (app, access, error)
// and, with follow, what is appended until ctx ends.
func (in instance) logs(ctx context.Context, lines int, follow bool, process string, out io.Writer) error {
	if in.rt == nil {
		return fmt.Errorf("no logs: %s moves the releases away from nginx and uWSGI", RootEnv)
	}
	if line := in.runtime().memoryKills(); line != "" {
		fmt.Fprintln(out, line)
	}
	var files []string
	paths := []string{
		in.runtime().uwsgiLogPath(),
		filepath.Join(in.rt.instanceNginxLogsDir(in.app, in.name), "access.log"),
		filepath.Join(in.rt.instanceNginxLogsDir(in.app, in.name), "error.log"),
	}
	if process != "" {
		// A worker's log or a cron job's: the name may be either.
		paths = []string{in.runtime().workerLogPath(process), in.runtime().cronLogPath(process)}
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		}
	}
	if len(files) == 0 && process != "" {
		return fmt.Errorf("no log yet for a worker or cron job named %s of %s@%s on this node", process, in.app, in.name)
	}
	if len(files) == 0 {
		return fmt.Errorf("no logs yet for %s@%s", in.app, in.name)
	}
	args := []string{"-n", strconv.Itoa(lines)}
	if follow {
		args = append(args, "-F")
	}
	// tail runs as the instance's user, which may read them all (they are
	// its group's): root opening files named by the instance's paths is
	// what must never happen.
	t, err := in.runtime().instanceUser(false)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "runuser", append(append([]string{"-u", t.name, "--", "tail"}, append(args, "--")...), files...)...)
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if err != nil && stderr.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if ctx.Err() != nil {
		return nil // Ctrl-C or a closed session ends -f; that is not an error
	}
	return err
}

// disabled reports whether the operator disabled the instance: it then
// answers 503, through every later deploy, until enabled.
func (in instance) disabled() bool {
	_, err := os.Stat(filepath.Join(in.dir, "disabled"))
	return err == nil
}

// setDisabled disables the instance (503 page) or enables it again, and
// routes its live release accordingly.
func (in instance) setDisabled(ctx context.Context, disabled bool) error {
	if _, err := os.Stat(in.dir); err != nil {
		return fmt.Errorf("%s@%s is not on this node", in.app, in.name)
	}
	marker := filepath.Join(in.dir, "disabled")
	if disabled {
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			return err
		}
	} else if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	cur, _, err := current(in.dir)
	if err != nil || cur == 0 || in.rt == nil {
		return err
	}
	spec, err := in.spec(cur)
	if err != nil {
		return err
	}
	if _, err := in.runtime().route(ctx, cur, readLink(in.dir, "previous"), spec, disabled); err != nil {
		return err
	}
	// Disabled: no worker runs; enabled: the live release's start again.
	if disabled {
		return in.runtime().stopAllWorkers(ctx, 0)
	}
	in.switchWorkers(ctx, cur, io.Discard)
	return nil
}

// runtime is the instance in its runtime (in.rt must not be nil).
func (in instance) runtime() runtimeInstance { return in.rt.instance(in.app, in.name) }
