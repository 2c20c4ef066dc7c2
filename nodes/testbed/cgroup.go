package testbed

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Each node gets its own cgroup subtree, so that the node agent can make
// per-instance cgroups with memory, pids and cpu limits inside a node exactly
// as on a real node, without touching the host's or another node's cgroups.
//
// On a cgroup v1 host (hybrid layout: a tmpfs on /sys/fs/cgroup with one
// mount per controller) the node's subtree is
// /sys/fs/cgroup/CONTROLLER/gitreceive-testbed/NODE for memory, pids and cpu,
// seen at /sys/fs/cgroup/CONTROLLER inside the node; the node's processes
// live in its subtree's root, as a real v1 host's live in the hierarchy's
// root. On a pure cgroup v2 host the subtree is
// /sys/fs/cgroup/gitreceive-testbed/NODE, seen at /sys/fs/cgroup, and the
// node's processes live in its leaf "init": v2 lets a cgroup hand
// controllers to its children only while it holds no process itself.
//
// The launcher joins the node's subtree and then makes the node's cgroup
// namespace (unshare --cgroup), rooted there. Inside it, /proc/PID/cgroup
// reads "/" for the subtree's root, and the node's init mounts each
// hierarchy afresh (ip netns exec left it a new sysfs with an empty
// /sys/fs/cgroup): a cgroup mount in a cgroup namespace shows only the
// namespace's part of the hierarchy. The host's directories could not be
// bound instead: they are not in the node's mount namespace.
const (
	cgroupRoot   = "/sys/fs/cgroup"
	cgroupParent = "gitreceive-testbed"
	// cgroupInitLeaf is where a node's processes start on a v2 host.
	cgroupInitLeaf = "init"

	// Filesystem magic number (statfs f_type) of cgroup2, from linux/magic.h.
	cgroup2Magic = 0x63677270
)

// cgroupControllers are the controllers a node's subtree must offer.
var cgroupControllers = []string{"memory", "pids", "cpu"}

// cgroup1Controllers are the v1 controllers a node may name when it mounts
// a hierarchy again: exactly the hierarchy's, or the mount fails.
var cgroup1Controllers = []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma"}

// cgroupHierarchy is one cgroup mount of the host that a node gets a subtree
// of: v1 has one per controller (or fewer, when controllers are co-mounted),
// v2 exactly one.
type cgroupHierarchy struct {
	mount   string   // mount point, e.g. /sys/fs/cgroup/memory
	options []string // v1: its controllers, of cgroup1Controllers
	// links are the controllers reached through a symlink to mount (cpu ->
	// cpu,cpuacct), which the node gets too.
	links []string
}

// cgroupHost is the host's cgroup layout.
type cgroupHost struct {
	v2          bool
	hierarchies []cgroupHierarchy
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point   string
	fsType  string
	options []string // the superblock's options
}

// parseMountinfo reads /proc/PID/mountinfo: the mount point is the 5th
// field; after the "-" separator come the filesystem type, the source and
// the superblock's options. Lines it cannot read are skipped.
func parseMountinfo(data []byte) []mountEntry {
	var out []mountEntry
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		out = append(out, mountEntry{
			point:   unescapeMountinfo(fields[4]),
			fsType:  fields[sep+1],
			options: strings.Split(fields[sep+3], ","),
		})
	}
	return out
}

// unescapeMountinfo undoes the kernel's \ooo escapes of space, tab, newline
// and backslash in a mountinfo path.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

// detectCgroups finds the hierarchies of memory, pids and cpu, and says what
// to do when one is missing.
func detectCgroups() (cgroupHost, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(cgroupRoot, &st); err != nil {
		return cgroupHost{}, fmt.Errorf("testbed: cgroups: statfs %s: %w", cgroupRoot, err)
	}
	if st.Type == cgroup2Magic {
		controllers, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
		if err != nil {
			return cgroupHost{}, fmt.Errorf("testbed: cgroups: %w", err)
		}
		return cgroup2Layout(strings.Fields(string(controllers)))
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return cgroupHost{}, fmt.Errorf("testbed: cgroups: %w", err)
	}
	return cgroup1Layout(parseMountinfo(data))
}

// cgroup1Layout finds, among the host's mounts, the v1 hierarchy of each of
// cgroupControllers directly below /sys/fs/cgroup.
func cgroup1Layout(mounts []mountEntry) (cgroupHost, error) {
	var h cgroupHost
	for _, c := range cgroupControllers {
		i := slices.IndexFunc(mounts, func(m mountEntry) bool {
			return m.fsType == "cgroup" && filepath.Dir(m.point) == cgroupRoot && slices.Contains(m.options, c)
		})
		if i < 0 {
			path := filepath.Join(cgroupRoot, c)
			return cgroupHost{}, fmt.Errorf("testbed: cgroups: no cgroup v1 %s hierarchy is mounted in %s (and it is not pure cgroup v2); mount one: mkdir %s && mount -t cgroup -o %s cgroup %s", c, cgroupRoot, path, c, path)
		}
		m := mounts[i]
		j := slices.IndexFunc(h.hierarchies, func(hier cgroupHierarchy) bool { return hier.mount == m.point })
		if j < 0 {
			var options []string
			for _, o := range m.options {
				if slices.Contains(cgroup1Controllers, o) {
					options = append(options, o)
				}
			}
			h.hierarchies = append(h.hierarchies, cgroupHierarchy{mount: m.point, options: options})
			j = len(h.hierarchies) - 1
		}
		if filepath.Base(m.point) != c {
			h.hierarchies[j].links = append(h.hierarchies[j].links, c)
		}
	}
	return h, nil
}

// cgroup2Layout is the layout of a pure v2 host whose root cgroup offers the
// controllers available.
func cgroup2Layout(available []string) (cgroupHost, error) {
	for _, c := range cgroupControllers {
		if !slices.Contains(available, c) {
			return cgroupHost{}, fmt.Errorf("testbed: cgroups: controller %s is not in %s/cgroup.controllers (%s); it is still bound to a cgroup v1 hierarchy or disabled on the kernel command line", c, cgroupRoot, strings.Join(available, " "))
		}
	}
	return cgroupHost{v2: true, hierarchies: []cgroupHierarchy{{mount: cgroupRoot}}}, nil
}

// cgroupMount is one hierarchy a node's init mounts, inside the node's
// cgroup namespace.
type cgroupMount struct {
	FSType  string   // cgroup or cgroup2
	Options string   // v1: the hierarchy's controllers
	Target  string   // the host's mount point of the hierarchy
	Links   []string // names in /sys/fs/cgroup that point at Target (v1)
}

// nodeMounts are the mounts of every node's init.
func (h cgroupHost) nodeMounts() []cgroupMount {
	var out []cgroupMount
	for _, hier := range h.hierarchies {
		m := cgroupMount{FSType: "cgroup", Options: strings.Join(hier.options, ","), Target: hier.mount, Links: hier.links}
		if h.v2 {
			m.FSType = "cgroup2"
		}
		out = append(out, m)
	}
	return out
}

// nodeDir is node name's subtree of hier on the host.
func nodeDir(hier cgroupHierarchy, name string) string {
	return filepath.Join(hier.mount, cgroupParent, name)
}

// joinFiles are the host's cgroup.procs files a process writes its pid to
// before it enters node name's cgroup namespace. The launcher joins the
// subtree's root, where the namespace it makes is then rooted. On v2 Exec
// joins the leaf init instead, as the node's init does from inside, since
// the root must stay free of processes.
func (h cgroupHost) joinFiles(name string, forExec bool) []string {
	var out []string
	for _, hier := range h.hierarchies {
		dir := nodeDir(hier, name)
		if h.v2 && forExec {
			dir = filepath.Join(dir, cgroupInitLeaf)
		}
		out = append(out, filepath.Join(dir, "cgroup.procs"))
	}
	return out
}

// joinCgroupsScript, run by sh on the host, writes its own pid to each of N
// cgroup.procs files and then becomes the command. Its arguments: N, the
// files, the command; nothing is pasted into the script.
const joinCgroupsScript = `n=$1; shift
while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n - 1)); done
exec "$@"`

// joinedCommand returns sh's arguments to run command in the cgroups whose
// cgroup.procs files are files.
func joinedCommand(files []string, command ...string) []string {
	args := append([]string{"-c", joinCgroupsScript, "sh", strconv.Itoa(len(files))}, files...)
	return append(args, command...)
}

// leaveNodeCgroup moves pid, a node's launcher, from the root of the node's
// v2 subtree back to this process's cgroup: a v2 cgroup with a process of
// its own cannot hand controllers to its children.
func leaveNodeCgroup(pid int) error {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	for line := range strings.Lines(string(data)) {
		if own, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return os.WriteFile(filepath.Join(cgroupRoot, own, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
		}
	}
	return fmt.Errorf("no cgroup v2 line in /proc/self/cgroup: %q", data)
}

// createNodeCgroups makes node name's subtrees; created receives each one as
// soon as it exists, so that a failure half-way is undone too. An existing
// subtree is an error: it belongs to a bed that was not cleaned up.
func (h cgroupHost) createNodeCgroups(name, prefix string, created func(dir string)) error {
	if h.v2 {
		// The root may have processes (it is exempt from the no-internal-
		// processes rule), so enabling controllers there always works;
		// systemd has normally done it already.
		if err := enableControllers(cgroupRoot); err != nil {
			return fmt.Errorf("testbed: cgroups: %w", err)
		}
	}
	for _, hier := range h.hierarchies {
		dir := nodeDir(hier, name)
		if err := h.makeNodeDir(dir, name, prefix); err != nil {
			return err
		}
		created(dir)
		if h.v2 {
			if err := os.Mkdir(filepath.Join(dir, cgroupInitLeaf), 0o755); err != nil {
				return fmt.Errorf("testbed: node %s: cgroup: %w", name, err)
			}
		}
		if !h.v2 && slices.Contains(hier.options, "cpu") {
			// parent cannot vanish now: it has a child.
			if err := weighLikeOneTaskPerCPU(filepath.Dir(dir)); err != nil {
				return fmt.Errorf("testbed: node %s: cgroup: %w", name, err)
			}
		}
	}
	return nil
}

// weighLikeOneTaskPerCPU sets the v1 cpu.shares of dir, the parent of all
// test nodes, to those of one task per CPU. With the default, one task's
// worth, all test nodes together got a third of the CPU time against two busy
// processes of the host on two cores (measured), where their processes had
// competed one by one before they had cgroups: timing-bound tests on nodes
// slowed down whenever the machine was busy. On v2 hosts the parent competes
// with systemd's slices, not with single processes, and keeps the default.
func weighLikeOneTaskPerCPU(dir string) error {
	const oneTask = 1024 // cpu.shares of the root's own tasks
	path := filepath.Join(dir, "cpu.shares")
	if err := os.WriteFile(path, []byte(strconv.Itoa(oneTask*runtime.NumCPU())), 0); err != nil {
		return fmt.Errorf("set %s: %w", path, err)
	}
	return nil
}

// makeNodeDir makes parent/NODE, and parent first when needed. Another bed's
// Close removes parent once it is empty, which can happen between our two
// mkdirs; then we try again (bounded).
func (h cgroupHost) makeNodeDir(dir, name, prefix string) error {
	var err error
	for range 5 {
		if err = h.mkdirUnderParent(dir); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("testbed: node %s: cgroup %s already exists; call CleanupStale(%q)", name, dir, prefix)
	default:
		return fmt.Errorf("testbed: node %s: cgroup: %w", name, err)
	}
}

func (h cgroupHost) mkdirUnderParent(dir string) error {
	parent := filepath.Dir(dir)
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if h.v2 {
		// parent holds no process, so it may hand the controllers on.
		if err := enableControllers(parent); err != nil {
			return err
		}
	}
	return os.Mkdir(dir, 0o755)
}

// enableControllers lets dir's children use memory, pids and cpu (v2),
// writing only those not enabled yet: dir may be the host's root.
func enableControllers(dir string) error {
	path := filepath.Join(dir, "cgroup.subtree_control")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var enable []string
	for _, c := range cgroupControllers {
		if !slices.Contains(strings.Fields(string(data)), c) {
			enable = append(enable, "+"+c)
		}
	}
	if len(enable) == 0 {
		return nil
	}
	if err := os.WriteFile(path, []byte(strings.Join(enable, " ")), 0); err != nil {
		return fmt.Errorf("enable %s in %s: %w", strings.Join(enable, " "), path, err)
	}
	return nil
}

// removeNodeCgroups removes every node subtree in dirs, children before
// parents, then the shared parent when no other bed uses it any more. The
// node's processes must be gone: a cgroup that still has one cannot be
// removed, and the error names it and its processes.
func removeNodeCgroups(dirs []string) error {
	var errs []error
	for _, dir := range dirs {
		errs = append(errs, removeCgroupTree(dir))
		// Busy (another bed's node) or already gone: both fine.
		_ = syscall.Rmdir(filepath.Dir(dir))
	}
	return errors.Join(errs...)
}

// removeCgroupTree removes the cgroup dir and every cgroup below it, deepest
// first. A process of a killed node may take a moment to leave its cgroup,
// so a busy cgroup is retried (bounded).
func removeCgroupTree(dir string) error {
	var tree []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			tree = append(tree, path)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) && len(tree) == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("testbed: remove cgroup %s: %w", dir, err)
	}
	// WalkDir lists parents before their children; reversed, every cgroup
	// comes before its parent.
	slices.Reverse(tree)
	for _, cg := range tree {
		if err := rmdirCgroup(cg); err != nil {
			return err
		}
	}
	return nil
}

func rmdirCgroup(dir string) error {
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		err = syscall.Rmdir(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != syscall.EBUSY {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	return fmt.Errorf("testbed: remove cgroup %s: %w (processes in it: [%s]); kill them, then call CleanupStale", dir, err, strings.Join(strings.Fields(string(procs)), " "))
}

// staleNodeCgroups lists the node subtrees a bed with this prefix left
// behind, in every hierarchy of the host.
func (h cgroupHost) staleNodeCgroups(prefix string) ([]string, error) {
	ours := staleNamePattern(prefix)
	var dirs []string
	for _, hier := range h.hierarchies {
		parent := filepath.Join(hier.mount, cgroupParent)
		entries, err := os.ReadDir(parent)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("testbed: stale cgroups: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() && ours.MatchString(e.Name()) {
				dirs = append(dirs, filepath.Join(parent, e.Name()))
			}
		}
	}
	return dirs, nil
}

// mountNodeCgroups runs in a node's init, in the node's mount and cgroup
// namespaces: it mounts the node's part of each hierarchy where the node
// agent looks for its cgroups. On v1 only those appear in /sys/fs/cgroup,
// which is then made read-only so that nothing else appears there by
// mistake; on v2 init moves on into the leaf, away from the root.
func mountNodeCgroups(mounts []cgroupMount, v2 bool) error {
	if !v2 {
		if err := syscall.Mount("tmpfs", cgroupRoot, "tmpfs", cgroupMountFlags, "mode=0755"); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", cgroupRoot, err)
		}
	}
	for _, m := range mounts {
		if !v2 {
			if err := os.Mkdir(m.Target, 0o755); err != nil {
				return err
			}
		}
		// A v2 mount from inside a cgroup namespace leaves the host-wide
		// flags (nsdelegate, memory_recursiveprot) alone.
		if err := syscall.Mount(m.FSType, m.Target, m.FSType, cgroupMountFlags, m.Options); err != nil {
			return fmt.Errorf("mount %s -o %q on %s: %w", m.FSType, m.Options, m.Target, err)
		}
		for _, link := range m.Links {
			if err := os.Symlink(filepath.Base(m.Target), filepath.Join(cgroupRoot, link)); err != nil {
				return err
			}
		}
	}
	if v2 {
		// "0" is the writer itself.
		procs := filepath.Join(cgroupRoot, cgroupInitLeaf, "cgroup.procs")
		if err := os.WriteFile(procs, []byte("0"), 0); err != nil {
			return fmt.Errorf("join %s: %w", procs, err)
		}
		return nil
	}
	if err := syscall.Mount("", cgroupRoot, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY|cgroupMountFlags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", cgroupRoot, err)
	}
	return nil
}

// cgroupMountFlags are those of systemd's cgroup mounts.
const cgroupMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC
