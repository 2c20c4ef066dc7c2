package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Each instance has its own cgroup, CgroupRoot/.../gitreceive/ID, holding
// every process of the instance on the node (its vassals, `run` scripts,
// update_fetch scripts) and limiting their memory, processes and CPU share
// (DESIGN.md decision 9). uWSGI's own --cgroup option writes cgroup v1's
// `tasks` file and fails on v2 (uwsgi#2504), so the agent does it:
//
//   - cgroup v2 (Debian 12 with systemd): CgroupRoot/gitreceive/ID with
//     memory.max, memory.swap.max = 0, pids.max and cpu.weight, the
//     controllers enabled in the subtrees above;
//   - cgroup v1 (hybrid hosts): CgroupRoot/{memory,pids,cpu}/gitreceive/ID
//     with memory.limit_in_bytes (and memsw, when swap is accounted),
//     pids.max and cpu.shares.
//
// A process enters the cgroup before it runs anything of the app, so no
// child is ever forked outside it: see enterInstance (scripts) and
// VassalExec (the uWSGI master, started by the emperor through it).
const cgroupDir = "gitreceive"

// Limits are what an instance may use on a node.
type Limits struct {
	MemoryMB     int // memory of all its processes, page cache included
	MaxProcesses int // processes and threads
	CPUWeight    int // share under contention, cgroup v2 cpu.weight (1-10000, default 100)
}

// cgroups is the layout found under a node's cgroup root.
type cgroups struct {
	v2 string            // the unified hierarchy, when it has the controllers
	v1 map[string]string // controller -> its v1 hierarchy's mount
}

var cgroupControllers = []string{"memory", "pids", "cpu"}

// cgroupID is what may name an instance's cgroup: an InstanceID.
var cgroupID = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}\.[a-z0-9][a-z0-9-]*$`)

// findCgroups looks at root (normally /sys/fs/cgroup) for v2 with memory,
// pids and cpu, else for the three v1 hierarchies.
func findCgroups(root string) (cgroups, error) {
	if data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		have := strings.Fields(string(data))
		missing := missingOf(cgroupControllers, have)
		if len(missing) == 0 {
			return cgroups{v2: root}, nil
		}
		return cgroups{}, fmt.Errorf("cgroup v2 at %s lacks the %s controller(s); enable them (systemd does by default)", root, strings.Join(missing, ", "))
	}
	c := cgroups{v1: map[string]string{}}
	for _, ctl := range cgroupControllers {
		dir := filepath.Join(root, ctl)
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
			return cgroups{}, fmt.Errorf("no cgroup %s controller under %s (neither cgroup v2 nor v1 is mounted there); per-instance limits need one", ctl, root)
		}
		c.v1[ctl] = dir
	}
	return c, nil
}

func missingOf(want, have []string) []string {
	var missing []string
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			missing = append(missing, w)
		}
	}
	return missing
}

// dirs are the instance's cgroup directories: one (v2) or one per
// controller (v1).
func (c cgroups) dirs(id string) map[string]string {
	if c.v2 != "" {
		return map[string]string{"": filepath.Join(c.v2, cgroupDir, id)}
	}
	d := map[string]string{}
	for ctl, mount := range c.v1 {
		d[ctl] = filepath.Join(mount, cgroupDir, id)
	}
	return d
}

// ensure makes the instance's cgroup and sets its limits (again: a new
// release may change them).
func (c cgroups) ensure(id string, l Limits) error {
	if !cgroupID.MatchString(id) {
		return fmt.Errorf("invalid cgroup name %q", id)
	}
	if l.MemoryMB < 1 || l.MaxProcesses < 1 || l.CPUWeight < 1 || l.CPUWeight > 10000 {
		return fmt.Errorf("invalid limits %+v", l)
	}
	mem := strconv.FormatInt(int64(l.MemoryMB)<<20, 10)
	if c.v2 != "" {
		// Controllers must be enabled in every subtree above the leaf.
		for _, dir := range []string{c.v2, filepath.Join(c.v2, cgroupDir)} {
			if err := mkdirCgroup(dir); err != nil {
				return err
			}
			if err := enableControllers(dir); err != nil {
				return err
			}
		}
		dir := filepath.Join(c.v2, cgroupDir, id)
		if err := mkdirCgroup(dir); err != nil {
			return err
		}
		return errors.Join(
			writeCgroup(dir, "memory.max", mem),
			writeCgroupIfPresent(dir, "memory.swap.max", "0"),
			writeCgroup(dir, "pids.max", strconv.Itoa(l.MaxProcesses)),
			writeCgroup(dir, "cpu.weight", strconv.Itoa(l.CPUWeight)),
		)
	}
	d := c.dirs(id)
	for _, dir := range d {
		for _, p := range []string{filepath.Dir(dir), dir} {
			if err := mkdirCgroup(p); err != nil {
				return err
			}
		}
	}
	// cgroup v1 keeps memsw >= memory: raise memory first when growing,
	// memsw first when shrinking.
	memErr := writeCgroup(d["memory"], "memory.limit_in_bytes", mem)
	swErr := writeCgroupIfPresent(d["memory"], "memory.memsw.limit_in_bytes", mem)
	if memErr != nil {
		memErr = writeCgroup(d["memory"], "memory.limit_in_bytes", mem)
	}
	// cpu.shares: 1024 is v1's default, as 100 is cpu.weight's.
	shares := max(2, l.CPUWeight*1024/100)
	return errors.Join(memErr, swErr,
		writeCgroup(d["pids"], "pids.max", strconv.Itoa(l.MaxProcesses)),
		writeCgroup(d["cpu"], "cpu.shares", strconv.Itoa(shares)),
	)
}

// enter moves process pid (with all its threads) into the instance's
// cgroup, which must exist.
func (c cgroups) enter(id string, pid int) error {
	if !cgroupID.MatchString(id) {
		return fmt.Errorf("invalid cgroup name %q", id)
	}
	for _, dir := range c.dirs(id) {
		if err := writeCgroup(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// remove removes the instance's cgroup; its processes must be gone.
func (c cgroups) remove(id string) error {
	if !cgroupID.MatchString(id) {
		return fmt.Errorf("invalid cgroup name %q", id)
	}
	var errs []error
	for _, dir := range c.dirs(id) {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("removing the cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// removeInstanceCgroup removes the instance's cgroup once its processes
// are gone; a cgroup whose last processes are still exiting is busy for a
// moment.
func (ri runtimeInstance) removeInstanceCgroup() error {
	rt := ri.rt
	if rt.CgroupRoot == "" {
		return nil
	}
	cg, err := findCgroups(rt.CgroupRoot)
	if err != nil {
		return err
	}
	for i := 0; ; i++ {
		err := cg.remove(ri.id())
		if err == nil || !errors.Is(err, syscall.EBUSY) || i == 50 {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memoryKills says how many of the instance's processes the kernel killed
// for going over its memory limit ("" when none, or no cgroups here).
func (ri runtimeInstance) memoryKills() string {
	rt, app, instance := ri.rt, ri.app, ri.name
	if rt.CgroupRoot == "" {
		return ""
	}
	cg, err := findCgroups(rt.CgroupRoot)
	if err != nil {
		return ""
	}
	id := ri.id()
	n := cg.oomKills(id)
	if n == 0 {
		return ""
	}
	limit := ""
	if mb := cg.memoryLimitMB(id); mb > 0 {
		limit = fmt.Sprintf(" (%d MB)", mb)
	}
	return fmt.Sprintf("%s/%s: %d process(es) killed for going over its memory limit%s; raise memory in app.ini or use less", app, instance, n, limit)
}

// memoryLimitMB is the instance's memory limit in MB (0 when unknown).
func (c cgroups) memoryLimitMB(id string) int {
	file, dir := "memory.max", c.dirs(id)[""]
	if c.v2 == "" {
		file, dir = "memory.limit_in_bytes", c.dirs(id)["memory"]
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return int(n >> 20)
}

// oomKills is how many of the instance's processes the kernel killed for
// going over memory so far (0 when unknown).
func (c cgroups) oomKills(id string) int {
	file := "memory.events"
	dir := c.dirs(id)[""]
	if c.v2 == "" {
		file, dir = "memory.oom_control", c.dirs(id)["memory"]
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(rest))
			return n
		}
	}
	return 0
}

func mkdirCgroup(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("making the cgroup %s: %w", dir, err)
	}
	return nil
}

// enableControllers turns on memory, pids and cpu for dir's children.
func enableControllers(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("reading %s/cgroup.subtree_control: %w", dir, err)
	}
	missing := missingOf(cgroupControllers, strings.Fields(string(data)))
	if len(missing) == 0 {
		return nil
	}
	return writeCgroup(dir, "cgroup.subtree_control", "+"+strings.Join(missing, " +"))
}

// writeCgroup writes one value to a cgroup file (no O_CREAT, no O_TRUNC:
// cgroupfs files exist and take one write each).
func writeCgroup(dir, file, value string) error {
	f, err := os.OpenFile(filepath.Join(dir, file), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", dir, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s to %s/%s: %w", value, dir, file, err)
	}
	return nil
}

func writeCgroupIfPresent(dir, file, value string) error {
	if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
		return nil
	}
	return writeCgroup(dir, file, value)
}
