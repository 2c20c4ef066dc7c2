package testbed

import (
	"reflect"
	"strings"
	"testing"
)

// hybridMountinfo is this machine's (and CI's) cgroup layout.
const hybridMountinfo = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

// checkError fails t unless err is nil and want empty, or err contains want;
// it tells whether an error was wanted (so there is no result to check).
func checkError(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatal(err)
		}
		return false
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
	return true
}

func TestCgroup1Layout(t *testing.T) {
	cases := []struct {
		name      string
		mountinfo string
		want      []cgroupHierarchy
		wantErr   string
	}{
		{
			name:      "hybrid, one mount per controller",
			mountinfo: hybridMountinfo,
			want: []cgroupHierarchy{
				{mount: "/sys/fs/cgroup/memory", options: []string{"memory"}},
				{mount: "/sys/fs/cgroup/pids", options: []string{"pids"}},
				{mount: "/sys/fs/cgroup/cpu", options: []string{"cpu"}},
			},
		},
		{
			name: "cpu co-mounted with cpuacct, optional fields, extra flags",
			mountinfo: `34 30 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory
35 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 master:3 - cgroup cgroup rw,xattr,cpu,cpuacct
38 30 0:35 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids,release_agent=/x
`,
			want: []cgroupHierarchy{
				{mount: "/sys/fs/cgroup/memory", options: []string{"memory"}},
				{mount: "/sys/fs/cgroup/pids", options: []string{"pids"}},
				{mount: "/sys/fs/cgroup/cpu,cpuacct", options: []string{"cpu", "cpuacct"}, links: []string{"cpu"}},
			},
		},
		{
			name:      "memory mounted elsewhere only",
			mountinfo: "34 30 0:31 / /mnt/memory rw - cgroup cgroup rw,memory\n",
			wantErr:   "no cgroup v1 memory hierarchy is mounted in /sys/fs/cgroup",
		},
		{
			name:      "pids missing",
			mountinfo: strings.ReplaceAll(hybridMountinfo, "rw,pids", "rw,freezer"),
			wantErr:   "mount -t cgroup -o pids cgroup /sys/fs/cgroup/pids",
		},
		{
			name:      "a cgroup2 mount is not a v1 hierarchy",
			mountinfo: "40 30 0:37 / /sys/fs/cgroup/memory rw - cgroup2 cgroup2 rw,memory\n",
			wantErr:   "no cgroup v1 memory hierarchy",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cgroup1Layout(parseMountinfo([]byte(tc.mountinfo)))
			if checkError(t, err, tc.wantErr) {
				return
			}
			if got.v2 || !reflect.DeepEqual(got.hierarchies, tc.want) {
				t.Errorf("got %+v, want v1 %+v", got, tc.want)
			}
		})
	}
}

func TestCgroup2Layout(t *testing.T) {
	cases := []struct {
		name      string
		available []string
		wantErr   string
	}{
		{"systemd's root", []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}, ""},
		{"memory still on v1", []string{"cpu", "pids"}, "controller memory is not in /sys/fs/cgroup/cgroup.controllers (cpu pids)"},
		{"no controllers", nil, "controller memory is not in"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cgroup2Layout(tc.available)
			if checkError(t, err, tc.wantErr) {
				return
			}
			want := cgroupHost{v2: true, hierarchies: []cgroupHierarchy{{mount: "/sys/fs/cgroup"}}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestParseMountinfo(t *testing.T) {
	cases := []struct {
		name string
		line string
		want []mountEntry
	}{
		{"plain", "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n",
			[]mountEntry{{point: "/sys/fs/cgroup/cpu", fsType: "cgroup", options: []string{"rw", "cpu"}}}},
		{"escaped space and backslash", `31 30 0:28 / /mnt/a\040b\134c rw - tmpfs tmpfs rw`,
			[]mountEntry{{point: `/mnt/a b\c`, fsType: "tmpfs", options: []string{"rw"}}}},
		{"truncated escape kept", `31 30 0:28 / /mnt/a\04 rw - tmpfs tmpfs rw`,
			[]mountEntry{{point: `/mnt/a\04`, fsType: "tmpfs", options: []string{"rw"}}}},
		{"no separator", "31 30 0:28 / /mnt rw tmpfs tmpfs rw\n", nil},
		{"too short after separator", "31 30 0:28 / /mnt rw - tmpfs\n", nil},
		{"separator too early", "31 30 - / /mnt rw tmpfs tmpfs rw\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseMountinfo([]byte(tc.line)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNodeMountsAndJoins(t *testing.T) {
	cases := []struct {
		name      string
		host      cgroupHost
		mounts    []cgroupMount
		launcher  []string
		execJoins []string
	}{
		{
			name: "v1",
			host: cgroupHost{hierarchies: []cgroupHierarchy{
				{mount: "/sys/fs/cgroup/memory", options: []string{"memory"}},
				{mount: "/sys/fs/cgroup/cpu,cpuacct", options: []string{"cpu", "cpuacct"}, links: []string{"cpu"}},
			}},
			mounts: []cgroupMount{
				{FSType: "cgroup", Options: "memory", Target: "/sys/fs/cgroup/memory"},
				{FSType: "cgroup", Options: "cpu,cpuacct", Target: "/sys/fs/cgroup/cpu,cpuacct", Links: []string{"cpu"}},
			},
			launcher:  []string{"/sys/fs/cgroup/memory/gitreceive-testbed/tb-1/cgroup.procs", "/sys/fs/cgroup/cpu,cpuacct/gitreceive-testbed/tb-1/cgroup.procs"},
			execJoins: []string{"/sys/fs/cgroup/memory/gitreceive-testbed/tb-1/cgroup.procs", "/sys/fs/cgroup/cpu,cpuacct/gitreceive-testbed/tb-1/cgroup.procs"},
		},
		{
			name:      "v2: the namespace is rooted at the subtree, Exec joins the leaf",
			host:      cgroupHost{v2: true, hierarchies: []cgroupHierarchy{{mount: "/sys/fs/cgroup"}}},
			mounts:    []cgroupMount{{FSType: "cgroup2", Target: "/sys/fs/cgroup"}},
			launcher:  []string{"/sys/fs/cgroup/gitreceive-testbed/tb-1/cgroup.procs"},
			execJoins: []string{"/sys/fs/cgroup/gitreceive-testbed/tb-1/init/cgroup.procs"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.host.nodeMounts(); !reflect.DeepEqual(got, tc.mounts) {
				t.Errorf("nodeMounts: got %+v, want %+v", got, tc.mounts)
			}
			if got := tc.host.joinFiles("tb-1", false); !reflect.DeepEqual(got, tc.launcher) {
				t.Errorf("launcher joins %v, want %v", got, tc.launcher)
			}
			if got := tc.host.joinFiles("tb-1", true); !reflect.DeepEqual(got, tc.execJoins) {
				t.Errorf("Exec joins %v, want %v", got, tc.execJoins)
			}
		})
	}
}
