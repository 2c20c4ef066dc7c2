package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
)

// destroy removes every trace of APP/INSTANCE on this node, in
// this order:
//
//  1. its nginx file (Unroute: nginx -t, reload), so nothing routes to it;
//     on failure nothing else is touched (the file names the instance's
//     log files, which nginx -t must still be able to open);
//  2. every vassal of the instance, whatever its release number (those
//     with a vassal file, a socket, a run/ file, a release directory, or
//     that the emperor lists), stopped with stopRelease; on failure the
//     files stay, for a retry;
//  3. its sockets and the temporary files of interrupted writes in the
//     vassals' and nginx's directories;
//  4. the instance directory (releases, specs, env, secret, tmp, run,
//     current and previous), SILVER_LOGS and the nginx logs;
//  5. the app's directories above them, when they are left empty;
//  6. the instance's user (its processes killed, what it left in /tmp,
//     /var/tmp and /dev/shm removed) and its cgroup.
//
// The instance directory and SILVER_LOGS hold what the app wrote, symlinks
// included: they are removed with os.RemoveAll, which never follows a
// symlink, and the paths all come from Runtime with checked names.
// Destroying what is not there is not an error, so a failed destroy can be
// run again.
func (ri runtimeInstance) destroy(ctx context.Context) error {
	rt, app, instance := ri.rt, ri.app, ri.name
	if err := checkInstanceNames(app, instance); err != nil {
		return err
	}
	if err := ri.unroute(ctx); err != nil {
		return fmt.Errorf("destroying %s/%s: %w", app, instance, err)
	}
	var errs []error
	if err := ri.stopAllWorkers(ctx, 0); err != nil {
		errs = append(errs, err)
	}
	for _, n := range ri.instanceVassals(ctx) {
		if err := ri.stopRelease(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("destroying %s/%s: %w", app, instance, errors.Join(errs...))
	}

	id := regexp.QuoteMeta(ri.id())
	errs = append(errs,
		removeMatching(rt.SocketsDir, regexp.MustCompile(`^`+id+`\.v[0-9]+\.sock$`)),
		removeMatching(rt.RoutesDir, regexp.MustCompile(`^\.?`+id+`(\.prev)?\.sock(\.new)?$`)),
		removeMatching(rt.VassalsDir, regexp.MustCompile(`^\.`+id+`\.v[0-9]+(\.workers)?\.ini\.tmp-`)),
	)
	if _, err := os.Stat(rt.NginxDir); err == nil {
		// Under the routing lock: a temporary file may be Route's, in use.
		unlock, err := lockNginxDir(ctx, rt.NginxDir)
		if err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, removeMatching(rt.NginxDir, regexp.MustCompile(`^\.`+id+`\.conf\.tmp-`)))
			unlock()
		}
	}
	for _, dir := range []string{ri.dir(), ri.logsDir(), ri.nginxLogsDir()} {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", dir, err))
		}
	}
	for _, base := range []string{rt.AppsDir, rt.LogsDir, rt.NginxLogsDir} {
		errs = append(errs, removeIfEmpty(filepath.Join(base, app)))
	}
	if rt.LogrotateDir != "" {
		errs = append(errs, removeMatching(rt.LogrotateDir, regexp.MustCompile(`^`+regexp.QuoteMeta(logrotateName(app, instance))+`$`)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroying %s/%s: %w", app, instance, err)
	}
	// Last, with nothing of the instance left that its uid could own.
	errs = append(errs, ri.removeTenant(ctx), ri.removeInstanceCgroup())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroying %s/%s: %w", app, instance, err)
	}
	return nil
}

// instanceVassals lists the release numbers that may have a vassal: from
// the vassals' and sockets' directories, the instance's run/ and releases/,
// and the emperor.
func (ri runtimeInstance) instanceVassals(ctx context.Context) []int {
	rt := ri.rt
	id := regexp.QuoteMeta(ri.id())
	dir := ri.dir()
	found := map[int]bool{}
	scan := func(dir string, re *regexp.Regexp) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if m := re.FindStringSubmatch(e.Name()); m != nil {
				if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
					found[n] = true
				}
			}
		}
	}
	vassal := regexp.MustCompile(`^` + id + `\.v([0-9]+)\.ini$`)
	scan(rt.VassalsDir, vassal)
	scan(rt.SocketsDir, regexp.MustCompile(`^`+id+`\.v([0-9]+)\.sock$`))
	scan(filepath.Join(dir, runDirName), regexp.MustCompile(`^v([0-9]+)\.`))
	scan(filepath.Join(dir, "releases"), regexp.MustCompile(`^v([0-9]+)(\.manifest\.json|\.spec\.json)?$`))
	if vs, err := emperorVassals(ctx, rt.EmperorStats); err == nil {
		for _, v := range vs {
			if m := vassal.FindStringSubmatch(v.ID); m != nil {
				if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
					found[n] = true
				}
			}
		}
	}
	var ns []int
	for n := range found {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// removeMatching removes dir's entries whose names match re (not
// recursively: they are files and sockets).
func removeMatching(dir string, re *regexp.Regexp) error {
	return removeEntries(dir, func(name string, _ *syscall.Stat_t) bool { return re.MatchString(name) }, os.Remove)
}

// removeEntries removes, with remove, dir's entries that match (given
// their name and lstat); a missing dir has none.
func removeEntries(dir string, match func(string, *syscall.Stat_t) bool, remove func(string) error) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) != nil || !match(e.Name(), &st) {
			continue
		}
		if err := remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeIfEmpty removes the directory dir if it is empty (rmdir: a symlink
// in its place is left alone).
func removeIfEmpty(dir string) error {
	err := syscall.Rmdir(dir)
	switch {
	case err == nil, errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.ENOTDIR):
		return nil
	}
	return fmt.Errorf("removing %s: %w", dir, err)
}
