package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

var logrotateSafe = regexp.MustCompile(`^/[A-Za-z0-9._/+@-]+$`)

// uwsgiLogPath is the log every vassal of the instance writes (uWSGI's
// app.log), beside nginx's access and error logs of the instance, in a
// directory only root may write: uWSGI opens it as root (chown-socket makes
// it set up logging before dropping privileges), and root must never open a
// path in a directory the app can write, where a symlink would lead it
// anywhere. SILVER_LOGS stays the app's own.
func (ri runtimeInstance) uwsgiLogPath() string {
	return filepath.Join(ri.nginxLogsDir(), appLogName)
}

// ensureUwsgiLog makes the instance's uWSGI log root's, group the
// instance's, 0660: the vassal keeps writing it after dropping privileges
// and reopens it on a reload; the app can read and truncate it, not
// replace it.
func (ri runtimeInstance) ensureUwsgiLog(t tenant) error {
	p := ri.uwsgiLogPath()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o660)
	if err != nil {
		return fmt.Errorf("the instance's log %s: %w", p, err)
	}
	defer f.Close()
	if err := f.Chown(0, t.gid); err != nil {
		return err
	}
	return f.Chmod(0o660)
}

// logrotateName is the instance's file in rt.LogrotateDir.
func logrotateName(app, instance string) string { return "gitreceive-app-" + InstanceID(app, instance) }

// writeLogrotate rotates what the app writes in SILVER_LOGS, as the
// instance's user: as root, a symlink the app put in its own directory
// could make logrotate copy or truncate any file. uWSGI's app.log lies with
// nginx's logs of the instance, rotated as root by server-files' file.
func (ri runtimeInstance) writeLogrotate(t tenant) error {
	rt, app, instance := ri.rt, ri.app, ri.name
	if rt.LogrotateDir == "" {
		return nil
	}
	logs := ri.logsDir()
	if !logrotateSafe.MatchString(logs) {
		// A name logrotate would read as a glob or split: uWSGI's own cap
		// on app.log still holds.
		return nil
	}
	conf := fmt.Sprintf(`# %s/%s: written by gitreceive's node agent at every start; removed by destroy.
%s/*.log {
	su %s %s
	size 20M
	rotate 3
	copytruncate
	compress
	delaycompress
	missingok
	notifempty
}
`, app, InstanceID(app, instance), logs, t.name, t.name)
	path := filepath.Join(rt.LogrotateDir, logrotateName(app, instance))
	if old, err := os.ReadFile(path); err == nil && string(old) == conf {
		return nil
	}
	if err := atomicfile.Write(path, []byte(conf), 0o644); err != nil {
		return err // names the file
	}
	return nil
}
