//go:build e2e

package testbed_test

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
)

// cgroupFiles names what a test needs in a node's cgroups, which differs
// between a cgroup v1 host (this machine and CI) and a pure v2 one.
type cgroupFiles struct {
	v2 bool
	// nodeDir is where a node sees its subtree of controller's hierarchy.
	nodeDir func(controller string) string
	// hostDir is where the host has it, for node.
	hostDir func(controller, node string) string
	// memoryLimit and cpuWeight are files of a child cgroup, with values
	// of 64 MiB and half the default weight.
	memoryLimit, memoryValue string
	cpuWeight, cpuValue      string
	// oomEvents is a child's file with an "oom_kill N" line.
	oomEvents string
	// initProcs is the cgroup.procs file holding the node's init.
	initProcs func(controller string) string
	// ownCgroup ends the line of /proc/self/cgroup of a process of the
	// node: the node's cgroup namespace makes its subtree "/".
	ownCgroup func(controller string) string
}

func hostCgroupFiles() cgroupFiles {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return cgroupFiles{
			v2:          true,
			nodeDir:     func(string) string { return "/sys/fs/cgroup" },
			hostDir:     func(_, node string) string { return "/sys/fs/cgroup/gitreceive-testbed/" + node },
			memoryLimit: "memory.max", memoryValue: "67108864",
			cpuWeight: "cpu.weight", cpuValue: "50",
			oomEvents: "memory.events",
			initProcs: func(string) string { return "/sys/fs/cgroup/init/cgroup.procs" },
			ownCgroup: func(string) string { return "0::/init" },
		}
	}
	return cgroupFiles{
		nodeDir:     func(c string) string { return "/sys/fs/cgroup/" + c },
		hostDir:     func(c, node string) string { return "/sys/fs/cgroup/" + c + "/gitreceive-testbed/" + node },
		memoryLimit: "memory.limit_in_bytes", memoryValue: "67108864",
		cpuWeight: "cpu.shares", cpuValue: "512",
		oomEvents: "memory.oom_control",
		initProcs: func(c string) string { return "/sys/fs/cgroup/" + c + "/cgroup.procs" },
		ownCgroup: func(c string) string { return ":" + c + ":/" },
	}
}

// makeChildCgroup is what the node agent does for an instance: a child
// cgroup of the node's, in every controller's hierarchy; on v2 the node's
// root must hand the controllers down first.
func (f cgroupFiles) makeChildCgroup(name string) string {
	if f.v2 {
		return "echo '+memory +pids +cpu' > /sys/fs/cgroup/cgroup.subtree_control && mkdir /sys/fs/cgroup/" + name
	}
	return "mkdir /sys/fs/cgroup/memory/" + name + " /sys/fs/cgroup/pids/" + name + " /sys/fs/cgroup/cpu/" + name
}

// eventCount returns the number after "key " in a cgroup events file.
func eventCount(t *testing.T, events, key string) int {
	t.Helper()
	for line := range strings.Lines(events) {
		if rest, ok := strings.CutPrefix(line, key+" "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(rest))
			if err != nil {
				t.Fatalf("%q in %q: %v", line, events, err)
			}
			return n
		}
	}
	t.Fatalf("no %q in %q", key, events)
	return 0
}

func TestNodeCgroups(t *testing.T) {
	signer, authorized := clientKey(t)
	workDir := t.TempDir()
	f := hostCgroupFiles()
	start := time.Now()
	bed := testbed.New(t, testbed.Options{
		Prefix:         "tbg",
		Subnet:         "10.77.207.0/24",
		Count:          2,
		AuthorizedKeys: []string{authorized},
		WorkDir:        workDir,
	})
	t.Logf("2 nodes up in %s", time.Since(start).Round(time.Millisecond))
	n1, n2 := bed.Nodes[0], bed.Nodes[1]
	c1, c2 := dialNode(t, n1, signer), dialNode(t, n2, signer)
	controllers := []string{"memory", "pids", "cpu"}

	t.Run("own subtree, empty, holding the node", func(t *testing.T) {
		for _, n := range bed.Nodes {
			client := dialNode(t, n, signer)
			for _, c := range controllers {
				children := runSSH(t, client, "find "+f.nodeDir(c)+" -mindepth 1 -maxdepth 1 -type d")
				want := ""
				if f.v2 {
					want = "/sys/fs/cgroup/init"
				}
				if children != want {
					t.Errorf("%s: %s has child cgroups %q at start, want %q", n.Name, f.nodeDir(c), children, want)
				}
				if procs := strings.Fields(runSSH(t, client, "cat "+f.initProcs(c))); !slices.Contains(procs, "1") {
					t.Errorf("%s: init (pid 1) not in %s: %v", n.Name, f.initProcs(c), procs)
				}
				// So are commands of Exec.
				if got := execNode(t, bed, n, "sh", "-c", "grep -qx $$ "+f.initProcs(c)+" && echo in || echo out"); got != "in" {
					t.Errorf("%s: a command of Exec is not in %s", n.Name, f.initProcs(c))
				}
				for how, self := range map[string]string{
					"ssh":  runSSH(t, client, "cat /proc/self/cgroup"),
					"Exec": execNode(t, bed, n, "cat", "/proc/self/cgroup"),
				} {
					if !slices.ContainsFunc(strings.Split(self, "\n"), func(line string) bool { return strings.HasSuffix(line, f.ownCgroup(c)) }) {
						t.Errorf("%s: /proc/self/cgroup of a command run by %s has no line ending %q:\n%s", n.Name, how, f.ownCgroup(c), self)
					}
				}
				// The same cgroup, seen from the host with host pids.
				hostProcs, err := os.ReadFile(filepath.Join(f.hostDir(c, n.Name), strings.TrimPrefix(f.initProcs(c), f.nodeDir(c))))
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Contains(strings.Fields(string(hostProcs)), strconv.Itoa(n.PID)) {
					t.Errorf("%s: init (host pid %d) not in its %s cgroup on the host: %s", n.Name, n.PID, c, hostProcs)
				}
			}
		}
	})

	if !f.v2 {
		t.Run("test nodes weigh one task per CPU", func(t *testing.T) {
			data, err := os.ReadFile("/sys/fs/cgroup/cpu/gitreceive-testbed/cpu.shares")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.TrimSpace(string(data)), strconv.Itoa(1024*runtime.NumCPU()); got != want {
				t.Errorf("cpu.shares of all test nodes = %s, want %s (1024 per CPU)", got, want)
			}
		})
	}

	t.Run("memory limit OOM-kills a hog, node and host live on", func(t *testing.T) {
		runSSH(t, c1, f.makeChildCgroup("hog"))
		dir := f.nodeDir("memory") + "/hog"
		runSSH(t, c1, "echo "+f.memoryValue+" > "+dir+"/"+f.memoryLimit)
		// The shell moves itself into the cgroup (by its pid in the node),
		// then becomes python, which fills 200 MiB against the 64 MiB limit.
		out := runSSH(t, c1, `sh -c 'echo $$ > `+dir+`/cgroup.procs && exec python3 -c "b = b\"x\" * (200 << 20)"'; echo "status $?"`)
		if !strings.HasSuffix(out, "status 137") {
			t.Errorf("hog in a 64 MiB cgroup: %q, want killed by SIGKILL (status 137)", out)
		}
		if kills := eventCount(t, runSSH(t, c1, "cat "+dir+"/"+f.oomEvents), "oom_kill"); kills < 1 {
			t.Errorf("%s/%s counts %d OOM kills", dir, f.oomEvents, kills)
		}
		for _, n := range bed.Nodes {
			if got := runSSH(t, dialNode(t, n, signer), "hostname"); got != n.Name {
				t.Errorf("hostname on %s after the OOM kill = %q", n.Name, got)
			}
		}
		if !slices.Contains(strings.Fields(execNode(t, bed, n1, "cat", f.initProcs("memory"))), "1") {
			t.Errorf("%s's init left its cgroup", n1.Name)
		}
	})

	t.Run("pids.max refuses forks past it", func(t *testing.T) {
		runSSH(t, c1, f.makeChildCgroup("forks"))
		dir := f.nodeDir("pids") + "/forks"
		runSSH(t, c1, "echo 4 > "+dir+"/pids.max")
		// The shell and three sleeps make 4; the fourth sleep cannot fork.
		out := runSSH(t, c1, `sh -c 'echo $$ > `+dir+`/cgroup.procs && for i in 1 2 3 4 5 6; do sleep 1 >/dev/null 2>&1 & done; wait' 2>&1; echo "status $?"`)
		if !strings.Contains(out, "fork") || strings.HasSuffix(out, "status 0") {
			t.Errorf("6 forks under pids.max 4: %q, want a fork failure", out)
		}
		if refused := eventCount(t, runSSH(t, c1, "cat "+dir+"/pids.events"), "max"); refused < 1 {
			t.Errorf("%s/pids.events counts %d refused forks", dir, refused)
		}
	})

	t.Run("cpu weight is writable", func(t *testing.T) {
		runSSH(t, c1, f.makeChildCgroup("weighted"))
		file := f.nodeDir("cpu") + "/weighted/" + f.cpuWeight
		if got := runSSH(t, c1, "echo "+f.cpuValue+" > "+file+" && cat "+file); got != f.cpuValue {
			t.Errorf("%s = %q after writing %s", file, got, f.cpuValue)
		}
	})

	t.Run("nodes' subtrees are separate", func(t *testing.T) {
		runSSH(t, c1, f.makeChildCgroup("only-on-1"))
		for _, c := range controllers {
			inNode := f.nodeDir(c) + "/only-on-1"
			if got := runSSH(t, c2, "test -e "+inNode+" && echo present || echo absent"); got != "absent" {
				t.Errorf("%s's cgroup %s seen on %s", n1.Name, inNode, n2.Name)
			}
			if _, err := os.Stat(filepath.Join(f.hostDir(c, n1.Name), "only-on-1")); err != nil {
				t.Errorf("%s's cgroup %s not in its subtree on the host: %v", n1.Name, inNode, err)
			}
			if _, err := os.Stat(inNode); err == nil {
				t.Errorf("%s's cgroup %s made on the host itself", n1.Name, inNode)
			}
		}
	})

	if !f.v2 {
		t.Run("no other host cgroups in reach", func(t *testing.T) {
			if got := strings.Fields(runSSH(t, c1, "ls /sys/fs/cgroup")); !slices.Equal(got, []string{"cpu", "memory", "pids"}) {
				t.Errorf("/sys/fs/cgroup on %s holds %v, want only cpu memory pids", n1.Name, got)
			}
			if got := runSSH(t, c1, "mkdir /sys/fs/cgroup/freezer 2>/dev/null && echo made || echo refused"); got != "refused" {
				t.Errorf("mkdir in %s's /sys/fs/cgroup: %s", n1.Name, got)
			}
		})
	}

	if t.Failed() {
		return
	}
	// Close must remove cgroups the node made, nested and busy ones too.
	startInNestedCgroup(t, bed, n2, f)
	pids := []int{n1.PID, n2.PID}
	start = time.Now()
	if err := bed.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("2 nodes down in %s", time.Since(start).Round(time.Millisecond))
	assertGone(t, "tbg", workDir, pids)
}

// startInNestedCgroup starts a long sleep on node in a cgroup two levels
// below the node's memory subtree root and returns once it is there.
func startInNestedCgroup(t *testing.T, bed *testbed.Bed, node *testbed.Node, f cgroupFiles) {
	t.Helper()
	execNode(t, bed, node, "sh", "-c", f.makeChildCgroup("outer")+" && mkdir "+f.nodeDir("memory")+"/outer/inner")
	procs := f.nodeDir("memory") + "/outer/inner/cgroup.procs"
	execNode(t, bed, node, "setsid", "-f", "sh", "-c", "echo $$ > "+procs+" && exec sleep 60 </dev/null >/dev/null 2>&1")
	for range 50 {
		if execNode(t, bed, node, "cat", procs) != "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("sleep did not join %s on %s", procs, node.Name)
}
