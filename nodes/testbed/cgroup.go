package testbed

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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
// mounted at /sys/fs/cgroup/CONTROLLER inside the node; the node's processes
// live in its subtree's root, as a real v1 host's live in the hierarchy's
// root. On a pure cgroup v2 host the subtree is
// /sys/fs/cgroup/gitreceive-testbed/NODE, mounted at /sys/fs/cgroup, and the
// node's processes live in its leaf "init": v2 lets a cgroup hand
// controllers to its children only while it holds no process itself.
//
// A node cannot bind-mount the host's directories: ip netns exec gives it a
// fresh sysfs, whose /sys/fs/cgroup is empty. So its init mounts each
// hierarchy once more, on a scratch directory, joins its subtree there, binds
// the subtree into place and unmounts the rest (enterNodeCgroups).
const (
	cgroupRoot   = "/sys/fs/cgroup"
	cgroupParent = "gitreceive-testbed"
	// cgroupInitLeaf is where a node's processes start on a v2 host.
	cgroupInitLeaf = "init"
	// cgroupScratch is where a node's init mounts a whole hierarchy for a
	// moment; it is on the node's own /run tmpfs.
	cgroupScratch = "/run/testbed-cgroup"

	// Filesystem magic number (statfs f_type) of cgroup2, from linux/magic.h.
	cgroup2Magic = 0x63677270
)

// cgroupControllers are the controllers a node's subtree must offer.
var cgroupControllers = []string{"memory", "pids", "cpu"}

// Mount options a node may repeat when it mounts a hierarchy again. For v1
// these are the controllers (a hierarchy's must be named exactly, or the
// mount fails); for v2 the flags of the one hierarchy, which every new mount
// from the root cgroup namespace sets for the whole host: mounting without
// the host's nsdelegate or memory_recursiveprot would turn them off.
var (
	cgroup1Options = []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma"}
	cgroup2Options = []string{"nsdelegate", "favordynmods", "memory_localevents", "memory_recursiveprot", "memory_hugetlb_accounting", "pids_localevents"}
)

// cgroupHierarchy is one cgroup mount of the host that a node gets a subtree
// of: v1 has one per controller (or fewer, when controllers are co-mounted),
// v2 exactly one.
type cgroupHierarchy struct {
	mount   string   // mount point, e.g. /sys/fs/cgroup/memory
	options []string // mount options, of cgroup1Options or cgroup2Options
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
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return cgroupHost{}, fmt.Errorf("testbed: cgroups: %w", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(cgroupRoot, &st); err != nil {
		return cgroupHost{}, fmt.Errorf("testbed: cgroups: statfs %s: %w", cgroupRoot, err)
	}
	if st.Type != cgroup2Magic {
		return cgroup1Layout(parseMountinfo(data))
	}
	controllers, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
	if err != nil {
		return cgroupHost{}, fmt.Errorf("testbed: cgroups: %w", err)
	}
	return cgroup2Layout(parseMountinfo(data), strings.Fields(string(controllers)))
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
				if slices.Contains(cgroup1Options, o) {
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
func cgroup2Layout(mounts []mountEntry, available []string) (cgroupHost, error) {
	for _, c := range cgroupControllers {
		if !slices.Contains(available, c) {
			return cgroupHost{}, fmt.Errorf("testbed: cgroups: controller %s is not in %s/cgroup.controllers (%s); it is still bound to a cgroup v1 hierarchy or disabled on the kernel command line", c, cgroupRoot, strings.Join(available, " "))
		}
	}
	// The last mount at a path is the one in sight.
	var root *mountEntry
	for i := range mounts {
		if mounts[i].point == cgroupRoot && mounts[i].fsType == "cgroup2" {
			root = &mounts[i]
		}
	}
	if root == nil {
		return cgroupHost{}, fmt.Errorf("testbed: cgroups: %s is cgroup2 but /proc/self/mountinfo has no cgroup2 mount there", cgroupRoot)
	}
	var options []string
	for _, o := range root.options {
		switch {
		case o == "rw" || o == "ro":
		case slices.Contains(cgroup2Options, o):
			options = append(options, o)
		default:
			// Mounting without it could change it for the whole host.
			return cgroupHost{}, fmt.Errorf("testbed: cgroups: the host's cgroup2 mount option %q is not one the test bed knows to keep (%s); add it to cgroup2Options in nodes/testbed/cgroup.go if mounting with it is harmless", o, strings.Join(cgroup2Options, ", "))
		}
	}
	return cgroupHost{v2: true, hierarchies: []cgroupHierarchy{{mount: cgroupRoot, options: options}}}, nil
}

// nodeCgroup is what a node's init needs to enter and mount its subtree of
// one hierarchy. Paths are relative to the hierarchy's root, except Target.
type nodeCgroup struct {
	FSType  string   // cgroup or cgroup2
	Options string   // mount options, of cgroup1Options or cgroup2Options
	Subtree string   // the node's subtree, gitreceive-testbed/NODE
	Join    string   // the cgroup init moves into: Subtree, or Subtree/init on v2
	Target  string   // where the node sees Subtree: the host's mount point
	Links   []string // names in /sys/fs/cgroup that point at Target (v1)
}

// procsInNode is, as seen inside the node, the cgroup.procs file of the
// cgroup its init joined.
func (cg nodeCgroup) procsInNode() string {
	return filepath.Join(cg.Target, strings.TrimPrefix(cg.Join, cg.Subtree), "cgroup.procs")
}

// nodeCgroups returns node name's subtrees, one per hierarchy.
func (h cgroupHost) nodeCgroups(name string) []nodeCgroup {
	var out []nodeCgroup
	for _, hier := range h.hierarchies {
		cg := nodeCgroup{
			FSType:  "cgroup",
			Options: strings.Join(hier.options, ","),
			Subtree: filepath.Join(cgroupParent, name),
			Target:  hier.mount,
			Links:   hier.links,
		}
		cg.Join = cg.Subtree
		if h.v2 {
			cg.FSType = "cgroup2"
			cg.Join = filepath.Join(cg.Subtree, cgroupInitLeaf)
		}
		out = append(out, cg)
	}
	return out
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
		dir := filepath.Join(hier.mount, cgroupParent, name)
		if err := h.makeNodeDir(dir, name, prefix); err != nil {
			return err
		}
		created(dir)
		if h.v2 {
			if err := os.Mkdir(filepath.Join(dir, cgroupInitLeaf), 0o755); err != nil {
				return fmt.Errorf("testbed: node %s: cgroup: %w", name, err)
			}
		}
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

// enableControllers lets dir's children use memory, pids and cpu (v2).
func enableControllers(dir string) error {
	var enable []string
	for _, c := range cgroupControllers {
		enable = append(enable, "+"+c)
	}
	path := filepath.Join(dir, "cgroup.subtree_control")
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

// enterNodeCgroups runs in a node's init, in its private mount namespace,
// once /run is the node's own tmpfs: it moves init (and so every later
// process of the node) into the node's subtrees and mounts them where the
// node agent looks for its cgroups. On v1 only the node's hierarchies appear
// in /sys/fs/cgroup, which is then made read-only so that nothing else
// appears there by mistake.
func enterNodeCgroups(cgroups []nodeCgroup, v2 bool) error {
	if !v2 {
		if err := syscall.Mount("tmpfs", cgroupRoot, "tmpfs", cgroupMountFlags, "mode=0755"); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", cgroupRoot, err)
		}
	}
	if err := os.Mkdir(cgroupScratch, 0o700); err != nil {
		return err
	}
	for _, cg := range cgroups {
		if err := mountNodeCgroup(cg, !v2); err != nil {
			return err
		}
	}
	if err := os.Remove(cgroupScratch); err != nil {
		return err
	}
	if v2 {
		return nil
	}
	if err := syscall.Mount("", cgroupRoot, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY|cgroupMountFlags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", cgroupRoot, err)
	}
	return nil
}

// cgroupMountFlags are those of systemd's cgroup mounts.
const cgroupMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC

// mountNodeCgroup mounts cg's whole hierarchy on the scratch directory,
// moves the calling process into the node's cgroup ("0" is the writer
// itself, whatever pid namespace it is in), binds the node's subtree to
// cg.Target and unmounts the hierarchy again.
func mountNodeCgroup(cg nodeCgroup, makeTarget bool) error {
	if err := syscall.Mount(cg.FSType, cgroupScratch, cg.FSType, cgroupMountFlags, cg.Options); err != nil {
		return fmt.Errorf("mount %s -o %q on %s: %w", cg.FSType, cg.Options, cgroupScratch, err)
	}
	procs := filepath.Join(cgroupScratch, cg.Join, "cgroup.procs")
	if err := os.WriteFile(procs, []byte("0"), 0); err != nil {
		return fmt.Errorf("join cgroup %s: %w", cg.Join, err)
	}
	if makeTarget {
		if err := os.Mkdir(cg.Target, 0o755); err != nil {
			return err
		}
	}
	if err := syscall.Mount(filepath.Join(cgroupScratch, cg.Subtree), cg.Target, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind cgroup %s on %s: %w", cg.Subtree, cg.Target, err)
	}
	if err := syscall.Unmount(cgroupScratch, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", cgroupScratch, err)
	}
	for _, link := range cg.Links {
		if err := os.Symlink(filepath.Base(cg.Target), filepath.Join(cgroupRoot, link)); err != nil {
			return err
		}
	}
	return nil
}
