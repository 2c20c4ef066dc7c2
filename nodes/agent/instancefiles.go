package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agent/pysupport"
)

// legacyAppUser is the one user every app ran as before instances had
// their own (DESIGN.md decision 9). Vassals of it may still run on a node
// until their instance is deployed again.
const legacyAppUser = "gitreceive-app"

func checkNames(app, instance string, n int) error {
	if !names.IsApp(app) || !names.IsInstance(instance) {
		return fmt.Errorf("invalid app %q or instance %q", app, instance)
	}
	if n < 1 {
		return fmt.Errorf("invalid release number %d", n)
	}
	return nil
}

// instanceFiles is what prepareInstance made for one start.
type instanceFiles struct {
	envSnapshot string // run/vN.env
	vassal      vassalConfig
}

// prepareInstance closes the instance's directories to everyone but its
// user, its group and root, and writes the env file, the secret (once),
// TEMP, the logs directory and run/vN.*, and returns the vassal's
// configuration. The modes (DESIGN.md decision 9):
//
//	AppsDir/APP, LogsDir/APP             root 0711: nobody lists instances
//	AppsDir/APP/INSTANCE                 root:INSTANCE 0750: the instance's
//	  releases/, releases/vN, run/       user and nginx (in its group) only
//	                                     (releases root's: read-only to the app)
//	env, secret, run/vN.env              INSTANCE 0600
//	tmp/, LogsDir/APP/INSTANCE           INSTANCE 0700
//
// An instance that ran as the shared user of earlier versions is moved
// over here: what it owns in its log directory is given to its own user.
func (ri runtimeInstance) prepareInstance(n int, spec Spec, t tenant) (instanceFiles, error) {
	nginxGID, err := ri.ensureInstanceDirs(n, spec, t)
	if err != nil {
		return instanceFiles{}, err
	}
	snapshot, err := ri.writeEnv(n, spec, t)
	if err != nil {
		return instanceFiles{}, err
	}
	return ri.writeBootstrap(n, spec, t, nginxGID, snapshot)
}

// ensureInstanceDirs makes the instance's directories, logs, secret (the
// spec's, else one of its own) and TEMP as a start of release n needs
// them, returning nginx's group id.
func (ri runtimeInstance) ensureInstanceDirs(n int, spec Spec, t tenant) (nginxGID int, err error) {
	rt := ri.rt
	dir := ri.dir()
	rel := ri.releaseDir(n)
	logs := ri.logsDir()
	secret := filepath.Join(dir, secretFileName)
	tmp := filepath.Join(dir, tmpDirName)
	run := filepath.Join(dir, runDirName)

	// While a vassal of the shared user of earlier versions still serves
	// the instance, it must keep reaching its release until the switch:
	// the instance's directories stay traversable (not listable) by
	// others until tidy stops it (closeInstanceDirs).
	closed := fs.FileMode(0o750)
	if len(ri.legacyVassals(t)) > 0 {
		closed = 0o751
	}
	nginxGID, err = lookupGroupID(rt.NginxGroup)
	if err != nil {
		return 0, err
	}
	for _, d := range []struct {
		path string
		gid  int
		mode fs.FileMode
	}{
		{rt.AppsDir, 0, 0o711},
		{filepath.Dir(dir), 0, 0o711},
		{filepath.Dir(logs), 0, 0o711},
		{dir, t.gid, closed},
		{filepath.Join(dir, "releases"), t.gid, closed},
		{rel, t.gid, 0o750},
		{run, t.gid, closed},
		{filepath.Dir(ri.nginxLogsDir()), 0, 0o711},
		// nginx (root) writes the instance's access and error logs here;
		// the instance may read them (`logs` tails them as its user).
		{ri.nginxLogsDir(), t.gid, 0o750},
		// Nodes set up by earlier versions let the shared app user write
		// here; no app may rename or replace a socket.
		{rt.SocketsDir, nginxGID, 0o750},
		// The links nginx connects through (routelinks.go): only root
		// re-points them.
		{rt.RoutesDir, nginxGID, 0o750},
	} {
		if err := ensureRootDir(d.path, d.gid, d.mode); err != nil {
			return 0, err
		}
	}
	if err := ensureAppDir(logs, 0o700, t); err != nil {
		return 0, fmt.Errorf("the instance's log directory: %w", err)
	}
	if err := reownEntries(logs, t); err != nil {
		return 0, fmt.Errorf("the instance's log directory: %w", err)
	}
	if err := ri.writeLogrotate(t); err != nil {
		return 0, err
	}
	if err := ri.ensureUwsgiLog(t); err != nil {
		return 0, err
	}
	if err := ensureSecret(secret, spec.Secret, t); err != nil {
		return 0, fmt.Errorf("the instance's secret %s: %w", secret, err)
	}
	if err := resetTempDir(tmp, t); err != nil {
		return 0, fmt.Errorf("the instance's TEMP %s: %w", tmp, err)
	}
	return nginxGID, nil
}

// writeEnv writes the instance's env file and release n's snapshot of it
// (returned): the spec's environment and this node's paths.
func (ri runtimeInstance) writeEnv(n int, spec Spec, t tenant) (snapshot string, err error) {
	rt := ri.rt
	dir := rt.instanceDir(ri.app, ri.name)
	rel := rt.releaseDir(ri.app, ri.name, n)
	logs := rt.instanceLogsDir(ri.app, ri.name)
	secret := filepath.Join(dir, secretFileName)
	tmp := filepath.Join(dir, tmpDirName)
	env := map[string]string{}
	for k, v := range spec.Env {
		env[k] = v
	}
	// Paths on this node: the agent's values win over the receiver's.
	env["TEMP"] = tmp
	env["TMPDIR"] = tmp
	env["SILVER_LOGS"] = logs
	env["SILVER_SECRET_FILE"] = secret
	env["PATH"] = filepath.Join(rel, "bin") + ":/usr/local/bin:/usr/bin:/bin"
	if rt.PythonDir != "" {
		// Every Python process of the app, whatever starts it, sees the
		// release (lib/python, silvercustomize) and silversupport.
		if err := pysupport.Install(rt.PythonDir); err != nil {
			return "", err
		}
		env["PYTHONPATH"] = rt.PythonDir
		env[pysupport.AppDirEnv] = rel
	}
	envData, err := formatEnvFile(env)
	if err != nil {
		return "", err
	}
	if err := atomicfile.WriteOwned(filepath.Join(dir, envFileName), envData, 0o600, t.uid, t.gid); err != nil {
		return "", fmt.Errorf("the env file: %w", err)
	}
	snapshot = releaseRunPrefix(dir, n) + ".env"
	if err := atomicfile.WriteOwned(snapshot, envData, 0o600, t.uid, t.gid); err != nil {
		return "", err // names the file
	}
	return snapshot, nil
}

// releaseRunPrefix starts the names of release n's files in run/.
func releaseRunPrefix(dir string, n int) string {
	return filepath.Join(dir, runDirName, "v"+strconv.Itoa(n))
}

// writeBootstrap writes release n's bootstrap (the WSGI file, the PHP
// prepend file) and returns the files its vassal is made of.
func (ri runtimeInstance) writeBootstrap(n int, spec Spec, t tenant, nginxGID int, snapshot string) (instanceFiles, error) {
	rt, app, instance := ri.rt, ri.app, ri.name
	rel := ri.releaseDir(n)
	prefix := releaseRunPrefix(ri.dir(), n)
	// PHP compares real paths with the allowed document root.
	realRel, err := filepath.EvalSymlinks(rel)
	if err != nil {
		return instanceFiles{}, err
	}
	c := vassalConfig{
		App: app, Instance: instance, N: n, Spec: spec,
		ReleaseDir: realRel,
		Socket:     ri.socketPath(n),
		LogFile:    ri.uwsgiLogPath(),
		UID:        t.uid, GID: t.gid, NginxGID: nginxGID,
		Cgroup:    rt.CgroupRoot != "",
		PythonDir: rt.PythonDir,
	}
	var boot []byte
	switch spec.Platform {
	case "python":
		c.Bootstrap = prefix + ".wsgi.py"
		boot, err = pythonBootstrap(c, snapshot)
	case "php":
		c.Bootstrap = prefix + ".env.php"
		boot, err = phpBootstrap(c, snapshot)
	}
	if err != nil {
		return instanceFiles{}, err
	}
	if err := atomicfile.WriteOwned(c.Bootstrap, boot, 0o640, atomicfile.KeepOwner, t.gid); err != nil {
		return instanceFiles{}, err // names the file
	}
	return instanceFiles{envSnapshot: snapshot, vassal: c}, nil
}

// legacyVassals lists the releases of the instance whose vassal runs as
// another user than t: the shared user of earlier versions.
func (ri runtimeInstance) legacyVassals(t tenant) []int {
	if _, err := lookupUser(legacyAppUser); err != nil {
		return nil // a node set up since has no such user, so no such vassal
	}
	var ns []int
	for _, n := range ri.instanceVassals(context.Background()) {
		if uid, ok := vassalUID(ri.vassalPath(n)); ok && uid != t.uid {
			ns = append(ns, n)
		}
	}
	return ns
}

// vassalUID is the uid a vassal file runs as.
func vassalUID(path string) (int, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "uid = "); ok {
			if uid, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return uid, true
			}
			// Earlier versions named the user.
			if u, err := lookupUser(strings.TrimSpace(v)); err == nil {
				return u.uid, true
			}
		}
	}
	return 0, false
}

// closeInstanceDirs takes the others' bit off the instance's directories
// once no vassal of the shared user is left (see prepareInstance).
func (ri runtimeInstance) closeInstanceDirs(t tenant) error {
	dir := ri.dir()
	for _, p := range []string{dir, filepath.Join(dir, "releases"), filepath.Join(dir, runDirName)} {
		if err := ensureRootDir(p, t.gid, 0o750); err != nil {
			return err
		}
	}
	return nil
}

// ensureRootDir makes dir root's, with group gid and mode. Its parents
// are root's too (the app can rename nothing on the way).
func ensureRootDir(dir string, gid int, mode fs.FileMode) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.Lchown(dir, 0, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// reownEntries gives dir's direct entries that another user owns (the
// shared app user of earlier versions) to t. dir is the instance's own:
// the entries are changed through a descriptor of it, never following a
// symlink.
func reownEntries(dir string, t tenant) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != t.uid || int(st.Gid) != t.gid) {
			if err := root.Lchown(e.Name(), t.uid, t.gid); err != nil {
				return err
			}
		}
	}
	return nil
}

func lookupGroupID(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("nginx's group %s: %w; run `gitreceive nodes setup` for this node", name, err)
	}
	return strconv.Atoi(g.Gid)
}

// ensureAppDir makes dir (its parents root's) owned by the instance's user
// with mode. Its parent must be root's: the app must not be able to swap
// dir for a symlink.
func ensureAppDir(dir string, mode fs.FileMode, t tenant) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Through a descriptor opened without following symlinks: whatever
	// happens to the path, root changes this directory and nothing else.
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("%s: %w (it must be a directory)", dir, err)
	}
	defer f.Close()
	if err := f.Chown(t.uid, t.gid); err != nil {
		return err
	}
	return f.Chmod(mode)
}

// ensureSecret creates the secret once: 32 random bytes, hex. An existing
// one is kept as it is (apps sign cookies with it), only its owner and
// mode are put right.
func ensureSecret(path, want string, ids tenant) error {
	if want != "" {
		// The receiver's: the same on every node of the instance, so that
		// what the app signs with it (sessions, tokens) holds on all.
		fi, err := os.Lstat(path)
		if err == nil && !fi.Mode().IsRegular() {
			return errors.New("it is not a regular file; move it away")
		}
		if have, _ := os.ReadFile(path); err != nil || string(have) != want {
			return atomicfile.WriteOwned(path, []byte(want), 0o600, ids.uid, ids.gid)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return errors.New("it is not a regular file; move it away")
		}
		if err := os.Lchown(path, ids.uid, ids.gid); err != nil {
			return err
		}
		return os.Chmod(path, 0o600)
	}
	if err != nil {
		return err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	err = errors.Join(f.Chown(ids.uid, ids.gid), writeAll(f, []byte(hex.EncodeToString(b[:]))), f.Sync(), f.Close())
	if err != nil {
		os.Remove(path)
	}
	return err
}

func writeAll(f *os.File, data []byte) error {
	_, err := f.Write(data)
	return err
}

// resetTempDir empties TEMP: the old one is renamed away first, so nothing
// the app does meanwhile lands in the new one, then removed (os.RemoveAll
// does not follow symlinks the app may have left).
func resetTempDir(dir string, ids tenant) error {
	if _, err := os.Lstat(dir); err == nil {
		old, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".old-")
		if err != nil {
			return err
		}
		if err := os.Rename(dir, filepath.Join(old, "x")); err != nil {
			os.Remove(old)
			return err
		}
		if err := os.RemoveAll(old); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := os.Lchown(dir, ids.uid, ids.gid); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}
