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
	all := []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}
	cases := []struct {
		name      string
		mountinfo string
		available []string
		want      []string
		wantErr   string
	}{
		{
			name:      "systemd's mount",
			mountinfo: "25 22 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
			available: all,
			want:      []string{"nsdelegate", "memory_recursiveprot"},
		},
		{
			name: "the last mount at the path counts",
			mountinfo: "25 22 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n" +
				"26 25 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			available: all,
			want:      nil,
		},
		{
			name:      "unknown option",
			mountinfo: "25 22 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,new_global_flag\n",
			available: all,
			wantErr:   `mount option "new_global_flag"`,
		},
		{
			name:      "controller still on v1",
			mountinfo: "25 22 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			available: []string{"cpu", "pids"},
			wantErr:   "controller memory is not in /sys/fs/cgroup/cgroup.controllers (cpu pids)",
		},
		{
			name:      "no mount entry",
			mountinfo: "",
			available: all,
			wantErr:   "no cgroup2 mount there",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cgroup2Layout(parseMountinfo([]byte(tc.mountinfo)), tc.available)
			if checkError(t, err, tc.wantErr) {
				return
			}
			want := []cgroupHierarchy{{mount: "/sys/fs/cgroup", options: tc.want}}
			if !got.v2 || !reflect.DeepEqual(got.hierarchies, want) {
				t.Errorf("got %+v, want v2 %+v", got, want)
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

func TestNodeCgroupsSpec(t *testing.T) {
	cases := []struct {
		name      string
		host      cgroupHost
		want      []nodeCgroup
		wantProcs []string
	}{
		{
			name: "v1",
			host: cgroupHost{hierarchies: []cgroupHierarchy{
				{mount: "/sys/fs/cgroup/memory", options: []string{"memory"}},
				{mount: "/sys/fs/cgroup/cpu,cpuacct", options: []string{"cpu", "cpuacct"}, links: []string{"cpu"}},
			}},
			want: []nodeCgroup{
				{FSType: "cgroup", Options: "memory", Subtree: "gitreceive-testbed/tb-1", Join: "gitreceive-testbed/tb-1", Target: "/sys/fs/cgroup/memory"},
				{FSType: "cgroup", Options: "cpu,cpuacct", Subtree: "gitreceive-testbed/tb-1", Join: "gitreceive-testbed/tb-1", Target: "/sys/fs/cgroup/cpu,cpuacct", Links: []string{"cpu"}},
			},
			wantProcs: []string{"/sys/fs/cgroup/memory/cgroup.procs", "/sys/fs/cgroup/cpu,cpuacct/cgroup.procs"},
		},
		{
			name: "v2: init lives in a leaf",
			host: cgroupHost{v2: true, hierarchies: []cgroupHierarchy{{mount: "/sys/fs/cgroup", options: []string{"nsdelegate"}}}},
			want: []nodeCgroup{
				{FSType: "cgroup2", Options: "nsdelegate", Subtree: "gitreceive-testbed/tb-1", Join: "gitreceive-testbed/tb-1/init", Target: "/sys/fs/cgroup"},
			},
			wantProcs: []string{"/sys/fs/cgroup/init/cgroup.procs"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.host.nodeCgroups("tb-1")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			for i, cg := range got {
				if procs := cg.procsInNode(); procs != tc.wantProcs[i] {
					t.Errorf("%s: procsInNode = %s, want %s", cg.Target, procs, tc.wantProcs[i])
				}
			}
		})
	}
}
