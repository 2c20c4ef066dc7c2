package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/services"
)

// Every instance runs as its own Unix user and group (DESIGN.md decision 9),
// named by services.Instance.UnixUser. The user has no password, no shell
// and its instance directory as home; its group holds it and nginx's user,
// which must reach the instance's static files through it. Nothing of one
// instance is readable or writable by another: they are different users.
//
// Uids (= gids) come from [tenantUIDMin, tenantUIDMax] and are never used
// twice on a node: a high-water mark in DataDir only grows, so a removed
// instance's uid never owns another instance's files, even files the old
// one left where destroy did not look.
const (
	tenantUIDMin  = 20000
	tenantUIDMax  = 59999
	tenantShell   = "/usr/sbin/nologin"
	tenantNextUID = "tenants.next-uid"
	tenantLock    = "tenants.lock"
)

// tenant is an instance's Unix user: its name, uid and gid (the group of
// the same name).
type tenant struct {
	name     string
	uid, gid int
}

// instanceUser is who runs APP/INSTANCE: its own user, or rt.FixedUser for
// tests of the pieces. create makes the user when it does not exist yet.
func (ri runtimeInstance) instanceUser(create bool) (tenant, error) {
	rt, app, instance := ri.rt, ri.app, ri.name
	if rt.FixedUser != "" {
		return lookupUser(rt.FixedUser)
	}
	name := services.Instance{App: app, Name: instance}.UnixUser()
	t, err := lookupUser(name)
	var unknown user.UnknownUserError
	if err == nil || !errors.As(err, &unknown) || !create {
		return t, err
	}
	return ri.createTenant(name)
}

// lookupUser is a user's uid and primary gid; root is refused.
func lookupUser(name string) (tenant, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return tenant{}, fmt.Errorf("the user %s: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return tenant{}, fmt.Errorf("the user %s has uid %q gid %q", name, u.Uid, u.Gid)
	}
	if uid == 0 || gid == 0 {
		return tenant{}, fmt.Errorf("the user %s is root (uid %d, gid %d); apps never run as root", name, uid, gid)
	}
	return tenant{name: name, uid: uid, gid: gid}, nil
}

// createTenant makes the instance's user and group, under a lock: two
// instances starting at once on one node must not take the same uid, and
// useradd refuses to run while another holds /etc/passwd's lock.
func (ri runtimeInstance) createTenant(name string) (tenant, error) {
	rt := ri.rt
	unlock, err := lockTenants(context.Background(), rt)
	if err != nil {
		return tenant{}, fmt.Errorf("creating the user %s: %w", name, err)
	}
	defer unlock()
	if t, err := lookupUser(name); err == nil {
		return t, nil // made by another start meanwhile
	}
	uid, err := nextTenantUID(rt)
	if err != nil {
		return tenant{}, fmt.Errorf("creating the user %s: %w", name, err)
	}
	id := strconv.Itoa(uid)
	steps := [][]string{
		{"groupadd", "--gid", id, name},
		{"useradd", "--uid", id, "--gid", id, "--no-create-home", "--no-user-group",
			"--home-dir", ri.dir(), "--shell", tenantShell,
			"--comment", "gitreceive " + ri.id(), name},
		// nginx serves the instance's static files through the group.
		{"gpasswd", "--add", rt.NginxUser, name},
	}
	for _, argv := range steps {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return tenant{}, fmt.Errorf("creating the user %s: %s: %v: %s", name, argv[0], err, strings.TrimSpace(string(out)))
		}
	}
	if err := atomicfile.Write(filepath.Join(rt.DataDir, tenantNextUID), []byte(strconv.Itoa(uid+1)+"\n"), 0o644); err != nil {
		return tenant{}, fmt.Errorf("recording the next uid: %w", err)
	}
	return tenant{name: name, uid: uid, gid: uid}, nil
}

// nextTenantUID is the first uid above the high-water mark and above every
// uid and gid in the range that passwd and group already hold.
func nextTenantUID(rt Runtime) (int, error) {
	next := tenantUIDMin
	if data, err := os.ReadFile(filepath.Join(rt.DataDir, tenantNextUID)); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n > next {
			next = n
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	for _, db := range []string{"/etc/passwd", "/etc/group"} {
		f, err := os.Open(db)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) < 3 {
				continue
			}
			if id, err := strconv.Atoi(fields[2]); err == nil && id >= next && id <= tenantUIDMax {
				next = id + 1
			}
		}
		f.Close()
	}
	if next > tenantUIDMax {
		return 0, fmt.Errorf("every uid from %d to %d has been used for an instance on this node", tenantUIDMin, tenantUIDMax)
	}
	return next, nil
}

// removeTenant ends every process of the instance's user, removes what it
// left in the shared temporary directories, then the user and its group.
// Call it once the instance's own directories are gone.
func (ri runtimeInstance) removeTenant(ctx context.Context) error {
	rt, app, instance := ri.rt, ri.app, ri.name
	if rt.FixedUser != "" {
		return nil
	}
	name := services.Instance{App: app, Name: instance}.UnixUser()
	t, err := lookupUser(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := killUser(ctx, t.uid); err != nil {
		return fmt.Errorf("removing the user %s: %w", name, err)
	}
	var errs []error
	for _, dir := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		errs = append(errs, removeOwnedBy(dir, t.uid))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing what the user %s left: %w", name, err)
	}
	unlock, err := lockTenants(ctx, rt)
	if err != nil {
		return err
	}
	defer unlock()
	if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
		return fmt.Errorf("removing the user %s: userdel: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	// userdel leaves a group that still has members (nginx's user).
	if _, err := user.LookupGroup(name); err == nil {
		if out, err := exec.Command("groupdel", name).CombinedOutput(); err != nil {
			return fmt.Errorf("removing the group %s: groupdel: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// killUser SIGKILLs every process whose real or effective uid is uid, until
// none is left (bounded: a fork bomb is outpaced within its pids limit).
func killUser(ctx context.Context, uid int) error {
	for pass := 0; pass < 100; pass++ {
		pids := userPIDs(uid)
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("processes of uid %d are still running", uid)
}

// userPIDs lists the processes running as uid (real uid, from /proc).
func userPIDs(uid int) []int {
	return procPIDs(func(pid int) bool { return procRealUID(pid) == uid })
}

// removeOwnedBy removes dir's entries owned by uid, whole (os.RemoveAll
// never follows a symlink), without descending into anyone else's. The
// user's processes are gone, so nothing moves while this runs.
func removeOwnedBy(dir string, uid int) error {
	return removeEntries(dir, func(_ string, st *syscall.Stat_t) bool { return int(st.Uid) == uid }, os.RemoveAll)
}

// lockTenants serializes making and removing instance users on this node.
func lockTenants(ctx context.Context, rt Runtime) (func(), error) {
	if err := os.MkdirAll(rt.DataDir, 0o755); err != nil {
		return nil, err
	}
	return lockFile(ctx, filepath.Join(rt.DataDir, tenantLock), "another user being made or removed")
}
