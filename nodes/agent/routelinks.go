package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Route links (DESIGN.md decision 12): nginx's file for an instance names
// only paths that stay the same from one release to the next, and a
// switch re-points links with rename(2) instead of rewriting the file and
// reloading nginx. Each slot (the live release, and the previous one at
// prev.HOST) has two links, both in directories that only root writes:
//
//	AppsDir/APP/INSTANCE/current   -> releases/vN  static/ and php_root
//	AppsDir/APP/INSTANCE/previous  -> releases/vP  (the links `releases` reads)
//	RoutesDir/ID.sock              -> SocketsDir/ID.vN.sock
//	RoutesDir/ID.prev.sock         -> SocketsDir/ID.vP.sock
//
// nginx resolves both at use: a static file is opened by its path for each
// request (no open_file_cache), and a unix socket path is resolved by
// connect(2) for each new upstream connection (no upstream keepalive
// pool), so a connection made after the rename reaches vN while requests
// in flight on vN-1 finish there. The release link moves first: by the
// time the app answers as vN, vN's static files are served. RoutesDir is
// not under /run: the links must outlive a reboot, after which the emperor
// binds the same sockets again.

// routeSlot is one of the two places nginx routes an instance's hosts to.
type routeSlot struct {
	link   string // the release link's name in the instance directory
	suffix string // after ID in RoutesDir
}

var (
	liveSlot = routeSlot{link: "current", suffix: ".sock"}
	prevSlot = routeSlot{link: "previous", suffix: ".prev.sock"}
)

// slotSocket is the path nginx connects to for slot: the link to the
// vassal socket of the release in it.
func (ri runtimeInstance) slotSocket(s routeSlot) string {
	return filepath.Join(ri.rt.RoutesDir, ri.id()+s.suffix)
}

// slotRelease is the path nginx reads slot's release files from.
func (ri runtimeInstance) slotRelease(s routeSlot) string {
	return filepath.Join(ri.dir(), s.link)
}

// pointed is the release slot's socket link points at (0: none).
func (ri runtimeInstance) pointed(s routeSlot) int {
	target, err := os.Readlink(ri.slotSocket(s))
	if err != nil {
		return 0
	}
	rest, ok := strings.CutPrefix(filepath.Base(target), ri.id()+".v")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSuffix(rest, ".sock"))
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// point re-points slot at release n (0: removes its links): the release
// link, then the socket link, whose rename is the switch of the app.
func (ri runtimeInstance) point(s routeSlot, n int) error {
	if err := setLink(ri.dir(), s.link, n); err != nil {
		return fmt.Errorf("pointing %s at v%d: %w", ri.slotRelease(s), n, err)
	}
	link := ri.slotSocket(s)
	if n == 0 {
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := replaceLink(link, ri.socketPath(n)); err != nil {
		return fmt.Errorf("pointing %s at v%d: %w", link, n, err)
	}
	return nil
}

// pointSlots points the previous slot at prev and the live one at live,
// in that order: prev.HOST takes the release live until now before HOST
// leaves it. On failure both go back to what they were.
func (ri runtimeInstance) pointSlots(live, prev int) error {
	wasLive, wasPrev := ri.pointed(liveSlot), ri.pointed(prevSlot)
	err := ri.point(prevSlot, prev)
	if err == nil {
		err = ri.point(liveSlot, live)
	}
	if err != nil {
		return errors.Join(err, ri.restoreSlots(wasLive, wasPrev))
	}
	return nil
}

// restoreSlots points the slots back at live and prev, live first (the
// reverse of pointSlots).
func (ri runtimeInstance) restoreSlots(live, prev int) error {
	if err := ri.point(liveSlot, live); err != nil {
		return fmt.Errorf("putting the route links back: %w", err)
	}
	if err := ri.point(prevSlot, prev); err != nil {
		return fmt.Errorf("putting the route links back: %w", err)
	}
	return nil
}

// replaceLink makes path a symlink to target with a new link renamed over
// the old one, so that a reader (nginx) always finds one or the other.
// path's directory must be root's alone: nothing else may race the
// temporary name. A link already pointing at target is left alone: a
// switch whose links activate set before routing needs no space on a
// disk that filled meanwhile.
func replaceLink(path, target string) error {
	if old, err := os.Readlink(path); err == nil && old == target {
		return nil
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
