package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Every process of an app starts the same way, before any of the app's code
// runs: in the instance's cgroup, with no_new_privs (no setuid binary or
// file capability can give it more than it has), and, for scripts, as the
// instance's user with no supplementary groups and no descriptor it did not
// open. Two entry points do it, both this binary re-executed as root:
//
//   - `gitreceive node enter ID UID GID -- PATH ARGS...` for `run` and
//     update_fetch scripts (asInstance builds the argv);
//   - VassalExec, the emperor's wrapper for every vassal (emperor.ini's
//     emperor-wrapper is a link named VassalWrapperName to this binary):
//     the uWSGI master enters the cgroup before it forks a single worker,
//     then uWSGI binds its socket as root and drops to the instance's user
//     as its vassal file says.

// VassalWrapperName is the name this binary answers to as the emperor's
// wrapper.
const VassalWrapperName = "uwsgi-vassal"

// vassalWrapperPath is where `nodes setup` links it.
const vassalWrapperPath = "/usr/local/lib/gitreceive/" + VassalWrapperName

// vassalLimitsMarker starts the comment line of a vassal file that names
// its instance's cgroup and limits: "; gitreceive-limits: ID MEM PROCS CPU".
const vassalLimitsMarker = "; gitreceive-limits:"

const uwsgiPath = "/usr/bin/uwsgi"

// linkVassalWrapper points vassalWrapperPath at this binary (the agent on
// a node, the receiver's own binary on its local node), before the setup
// script starts the emperor that execs it.
func linkVassalWrapper(out io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return err
	}
	if cur, err := os.Readlink(vassalWrapperPath); err == nil && cur == self {
		return nil
	}
	tmp := vassalWrapperPath + ".new"
	os.Remove(tmp)
	if err := os.Symlink(self, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, vassalWrapperPath); err != nil {
		return err
	}
	fmt.Fprintf(out, "emperor's vassal wrapper: %s -> %s\n", vassalWrapperPath, self)
	return nil
}

// ensureInstanceCgroup makes the instance's cgroup with spec's limits, on
// a runtime that has cgroups (tests of the pieces have none).
func (ri runtimeInstance) ensureInstanceCgroup(spec Spec) error {
	rt := ri.rt
	if rt.CgroupRoot == "" {
		return nil
	}
	cg, err := findCgroups(rt.CgroupRoot)
	if err != nil {
		return err
	}
	spec = spec.WithDefaults()
	l := Limits{MemoryMB: spec.MemoryMB, MaxProcesses: spec.MaxProcesses, CPUWeight: spec.CPUWeight}
	if err := cg.ensure(ri.id(), l); err != nil {
		return fmt.Errorf("the instance's cgroup: %w", err)
	}
	return nil
}

// asInstance is how to start argv as the instance's user: through `node
// enter` on a runtime with cgroups, else (tests of the pieces) with a plain
// credential change, which the caller sets when cred is not nil.
func (ri runtimeInstance) asInstance(t tenant, argv []string) (cmd []string, cred *syscall.Credential, err error) {
	rt := ri.rt
	if rt.CgroupRoot == "" {
		return argv, &syscall.Credential{Uid: uint32(t.uid), Gid: uint32(t.gid), Groups: []uint32{}}, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("finding the agent's own binary: %w", err)
	}
	head := []string{self, "node", "enter", ri.id(), strconv.Itoa(t.uid), strconv.Itoa(t.gid), "--"}
	return append(head, argv...), nil, nil
}

// Enter is `node enter ID UID GID -- PATH ARGS...`: this process joins the
// instance's cgroup, drops to UID/GID with no supplementary groups, sets
// no_new_privs, marks every descriptor above stderr close-on-exec, and
// becomes PATH. It returns only on failure.
func enter(args []string) error {
	if len(args) < 5 || args[3] != "--" {
		return errors.New("usage: node enter ID UID GID -- PATH [ARGS...]")
	}
	id := args[0]
	uid, err1 := strconv.Atoi(args[1])
	gid, err2 := strconv.Atoi(args[2])
	argv := args[4:]
	if !cgroupID.MatchString(id) || err1 != nil || err2 != nil || uid <= 0 || gid <= 0 || !filepath.IsAbs(argv[0]) {
		return fmt.Errorf("node enter: invalid arguments %q", args)
	}
	// no_new_privs is a thread's: set it on the thread that calls execve.
	runtime.LockOSThread()
	cg, err := findCgroups(SystemRuntime().CgroupRoot)
	if err != nil {
		return err
	}
	if err := cg.enter(id, os.Getpid()); err != nil {
		return err
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	return execRestricted(argv[0], argv)
}

// execRestricted sets no_new_privs, closes every inherited descriptor above
// stderr at exec, and execs path.
func execRestricted(path string, argv []string) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range: %w", err)
	}
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// VassalExec is the emperor's wrapper: args are what the emperor gives
// uWSGI (`--ini FILE`, FILE relative to the vassals' directory, the
// working directory). The vassal file's limits line names the instance's
// cgroup; the process joins it (made again with those limits if a reboot
// emptied the cgroup tree), sets no_new_privs and becomes uWSGI with the
// same arguments. The emperor's descriptor to the vassal stays open. A
// vassal file without the line (written before instances had cgroups)
// starts as it did then.
func VassalExec(args []string) error {
	runtime.LockOSThread()
	if len(args) == 2 && args[0] == "--ini" {
		id, l, ok, err := vassalLimits(args[1])
		if err != nil {
			return err
		}
		if ok {
			cg, err := findCgroups(SystemRuntime().CgroupRoot)
			if err != nil {
				return err
			}
			if err := cg.ensure(id, l); err != nil {
				return err
			}
			if err := cg.enter(id, os.Getpid()); err != nil {
				return err
			}
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if len(args) == 2 && args[0] == "--ini" {
		if app, instance, n, ok := workersVassal(args[1]); ok {
			// A release's workers: gitreceive supervises them, not uWSGI.
			if err := superviseWorkers(app, instance, n); err != nil {
				return err
			}
			os.Exit(0)
		}
	}
	return syscall.Exec(uwsgiPath, append([]string{"uwsgi"}, args...), os.Environ())
}

// vassalLimits reads the limits line of a vassal file (root's, in the
// root-owned vassals directory).
func vassalLimits(file string) (id string, l Limits, ok bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return "", Limits{}, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for i := 0; i < 20 && sc.Scan(); i++ {
		rest, found := bytes.CutPrefix(sc.Bytes(), []byte(vassalLimitsMarker))
		if !found {
			continue
		}
		fields := strings.Fields(string(rest))
		if len(fields) != 4 {
			return "", Limits{}, false, fmt.Errorf("%s: malformed limits line", file)
		}
		nums := make([]int, 3)
		for j, s := range fields[1:] {
			if nums[j], err = strconv.Atoi(s); err != nil || nums[j] < 1 {
				return "", Limits{}, false, fmt.Errorf("%s: malformed limits line", file)
			}
		}
		return fields[0], Limits{MemoryMB: nums[0], MaxProcesses: nums[1], CPUWeight: nums[2]}, true, nil
	}
	return "", Limits{}, false, sc.Err()
}
