package apps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

func TestLoadConfigLimits(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		ini  string
		want appconfig.Limits
		err  []string // facts of the error; nil: loads
	}{
		{"defaults", "", appconfig.Limits{DefaultMemoryMB: 512, MaxMemoryMB: 4096, DefaultMaxProcesses: 128, MaxProcesses: 1024}, nil},
		{"all set", "default_memory = 1G\nmax_memory = 16g\ndefault_max_processes = 200\nmax_processes = 4096\n",
			appconfig.Limits{DefaultMemoryMB: 1024, MaxMemoryMB: 16384, DefaultMaxProcesses: 200, MaxProcesses: 4096}, nil},
		{"plain megabytes, default equal to max", "default_memory = 768\nmax_memory = 768MB\n",
			appconfig.Limits{DefaultMemoryMB: 768, MaxMemoryMB: 768, DefaultMaxProcesses: 128, MaxProcesses: 1024}, nil},
		{"lowest", "default_memory = 32M\nmax_memory = 32M\ndefault_max_processes = 8\nmax_processes = 8\n",
			appconfig.Limits{DefaultMemoryMB: 32, MaxMemoryMB: 32, DefaultMaxProcesses: 8, MaxProcesses: 8}, nil},
		{"memory not a size", "max_memory = lots\n", appconfig.Limits{}, []string{`max_memory = "lots" is not a size`, "4G"}},
		{"memory with a fraction", "default_memory = 0.5G\n", appconfig.Limits{}, []string{`default_memory = "0.5G" is not a size`}},
		{"memory below the minimum", "default_memory = 16M\n", appconfig.Limits{}, []string{`default_memory = "16M" is less than 32M`}},
		{"memory too large", "max_memory = 99999G\n", appconfig.Limits{}, []string{`max_memory = "99999G" is more than 16384G`}},
		{"processes too few", "default_max_processes = 4\n", appconfig.Limits{}, []string{`default_max_processes = "4" must be a whole number from 8 to 4194304`}},
		{"processes not a number", "max_processes = all\n", appconfig.Limits{}, []string{`max_processes = "all" must be a whole number`}},
		{"processes too many", "max_processes = 4194305\n", appconfig.Limits{}, []string{`max_processes = "4194305"`}},
		{"default memory above the max", "default_memory = 8G\nmax_memory = 4G\n", appconfig.Limits{},
			[]string{"default_memory = 8G is more than max_memory = 4G; lower default_memory or raise max_memory"}},
		{"default memory left above a lowered max", "max_memory = 256M\n", appconfig.Limits{},
			[]string{"default_memory = 512M (the default) is more than max_memory = 256M"}},
		{"default processes above the max", "default_max_processes = 100\nmax_processes = 50\n", appconfig.Limits{},
			[]string{"default_max_processes = 100 is more than max_processes = 50; lower default_max_processes or raise max_processes"}},
		{"default processes left above a lowered max", "max_processes = 64\n", appconfig.Limits{},
			[]string{"default_max_processes = 128 (the default) is more than max_processes = 64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, ConfigFileName)
			if err := os.WriteFile(path, []byte(tc.ini), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(dir, "")
			if tc.err == nil {
				if err != nil || c.Limits != tc.want {
					t.Fatalf("LoadConfig = %+v, %v; want %+v", c.Limits, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadConfig accepted %q: %+v", tc.ini, c.Limits)
			}
			for _, fact := range append(tc.err, path+": ") {
				if !strings.Contains(err.Error(), fact) {
					t.Errorf("error %q does not mention %q", err, fact)
				}
			}
		})
	}
}

// appconfig fills in the worker defaults the agent applies; they must be
// the same numbers, or the memory checks would judge other workers than
// the ones that run.
func TestWorkerDefaultsAgreeWithTheAgent(t *testing.T) {
	if appconfig.DefaultWorkers != agent.DefaultWorkers || appconfig.DefaultReloadOnRSS != agent.DefaultReloadOnRSS {
		t.Fatalf("appconfig's defaults (workers %d, reload_on_rss %d) differ from the agent's (%d, %d)",
			appconfig.DefaultWorkers, appconfig.DefaultReloadOnRSS, agent.DefaultWorkers, agent.DefaultReloadOnRSS)
	}
	d := appconfig.DefaultLimits()
	if d.DefaultMemoryMB != agent.DefaultMemoryMB || d.DefaultMaxProcesses != agent.DefaultMaxProcesses {
		t.Fatalf("the receiver's defaults (%+v) differ from the agent's (memory %d, processes %d)", d, agent.DefaultMemoryMB, agent.DefaultMaxProcesses)
	}
}

// limitsRelease parses keys (added to a minimal app.ini) into a release of blog's
// branch.
func limitsRelease(t *testing.T, branch, keys string) *builder.Release {
	t.Helper()
	tree := fileTree{"wsgi.py": true}
	cfg, _, err := appconfig.Parse("app.ini", []byte("[production]\napp_name = blog\nrunner = wsgi.py\n"+keys), "blog", tree)
	if err != nil {
		t.Fatal(err)
	}
	return &builder.Release{App: "blog", Instance: names.Instance(branch), Branch: branch, Number: 1, Commit: "abc", Config: cfg}
}

// fileTree is a pushed tree of files only, for app.ini's runner check.
type fileTree map[string]bool

func (f fileTree) IsFile(p string) bool { return f[p] }
func (f fileTree) IsDir(string) bool    { return false }

func TestRunSpecResources(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keys   string
		limits appconfig.Limits
		// memory_mb, max_processes, cpu_weight, workers, reload_on_rss
		want [5]int
	}{
		{"receiver defaults", "", appconfig.Limits{}, [5]int{512, 128, 100, 2, 256}},
		{"the receiver's own defaults", "", appconfig.Limits{DefaultMemoryMB: 2048, MaxMemoryMB: 8192, DefaultMaxProcesses: 64},
			[5]int{2048, 64, 100, 2, 512}},
		{"app.ini's values", "memory = 1G\nmax_processes = 32\ncpu_weight = 50\nworkers = 8\n", appconfig.Limits{},
			[5]int{1024, 32, 50, 8, 128}},
		{"explicit reload_on_rss", "memory = 3G\nreload_on_rss = 700\n", appconfig.Limits{}, [5]int{3072, 128, 100, 2, 700}},
		{"at the ceilings", "memory = 16384G\nmax_processes = 4194304\ncpu_weight = 10000\n",
			appconfig.Limits{MaxMemoryMB: appconfig.MemoryCeilingMB, MaxProcesses: appconfig.ProcessesCeiling},
			[5]int{appconfig.MemoryCeilingMB, appconfig.ProcessesCeiling, 10000, 2, 512}},
		{"at the floors", "memory = 32M\nmax_processes = 8\ncpu_weight = 1\nworkers = 4\n", appconfig.Limits{}, [5]int{32, 8, 1, 4, 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Apps{cfg: Config{Domain: "apps.test", Limits: tc.limits}, config: &configStore{dir: t.TempDir()}}
			r := limitsRelease(t, "main", tc.keys)
			if err := a.checkLimits(r, false); err != nil {
				t.Fatal(err)
			}
			spec, err := a.runSpec(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := spec.Validate(); err != nil {
				t.Fatalf("the agent refuses the spec: %v", err)
			}
			if got := [5]int{spec.MemoryMB, spec.MaxProcesses, spec.CPUWeight, spec.Workers, spec.ReloadOnRSS}; got != tc.want {
				t.Errorf("memory_mb, max_processes, cpu_weight, workers, reload_on_rss = %v, want %v", got, tc.want)
			}
		})
	}
}

// The cap check goLive runs before provisioning: one line naming the file,
// line, key, value and setting; with several branches, which branch.
func TestServerCheckLimits(t *testing.T) {
	a := &Apps{cfg: Config{Limits: appconfig.Limits{MaxMemoryMB: 2048, MaxProcesses: 256}}}
	for _, tc := range []struct {
		name    string
		branch  string
		keys    string
		several bool
		want    string // "": accepted
	}{
		{"within the caps", "main", "memory = 2G\nmax_processes = 256\n", false, ""},
		{"memory above max_memory", "main", "workers = 2\nmemory = 3G\n", false,
			"app.ini:5: memory: 3G is more than this receiver allows (max_memory = 2G); lower memory or ask the operator to raise max_memory"},
		{"max_processes above the cap", "main", "max_processes = 257\n", false,
			"app.ini:4: max_processes: 257 is more than this receiver allows (its max_processes setting = 256); lower max_processes or ask the operator to raise the receiver's max_processes"},
		{"one of several branches", "feature/x", "memory = 4096\n", true,
			"branch feature/x: app.ini:4: memory: 4096 is more than this receiver allows (max_memory = 2G); lower memory or ask the operator to raise max_memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.checkLimits(limitsRelease(t, tc.branch, tc.keys), tc.several)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("checkLimits = %v\nwant %s", err, tc.want)
			}
		})
	}
}

// Spec comes over the wire: the resource fields are 0 (the default) or a
// number the cgroup files take.
func TestSpecResourceBounds(t *testing.T) {
	base := agent.Spec{Platform: "python", Runner: "wsgi.py", Callable: "application", Locations: []agent.Location{{Host: "a.test"}}, HealthCheck: "/"}
	for _, tc := range []struct {
		name string
		set  func(*agent.Spec)
		err  string // "": valid
	}{
		{"all default", func(*agent.Spec) {}, ""},
		{"lowest", func(s *agent.Spec) { s.MemoryMB, s.MaxProcesses, s.CPUWeight = 32, 8, 1 }, ""},
		{"highest", func(s *agent.Spec) { s.MemoryMB, s.MaxProcesses, s.CPUWeight = 16<<20, 4194304, 10000 }, ""},
		{"memory too small", func(s *agent.Spec) { s.MemoryMB = 31 }, "memory_mb = 31 is out of range"},
		{"memory negative", func(s *agent.Spec) { s.MemoryMB = -1 }, "memory_mb = -1"},
		{"memory too large", func(s *agent.Spec) { s.MemoryMB = 16<<20 + 1 }, "memory_mb"},
		{"processes too few", func(s *agent.Spec) { s.MaxProcesses = 7 }, "max_processes = 7 is out of range (8 to 4194304"},
		{"processes beyond pid_max", func(s *agent.Spec) { s.MaxProcesses = 4194305 }, "max_processes"},
		{"processes negative", func(s *agent.Spec) { s.MaxProcesses = -8 }, "max_processes"},
		{"cpu weight too large", func(s *agent.Spec) { s.CPUWeight = 10001 }, "cpu_weight = 10001 is out of range (1 to 10000"},
		{"cpu weight negative", func(s *agent.Spec) { s.CPUWeight = -1 }, "cpu_weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := base
			tc.set(&spec)
			for _, s := range []agent.Spec{spec, spec.WithDefaults()} {
				err := s.Validate()
				switch {
				case tc.err == "" && err != nil:
					t.Fatalf("Validate: %v", err)
				case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
					t.Fatalf("Validate = %v, want an error with %q", err, tc.err)
				}
			}
		})
	}
	d := base.WithDefaults()
	if d.MemoryMB != 512 || d.MaxProcesses != 128 || d.CPUWeight != 100 {
		t.Errorf("defaults: memory_mb %d, max_processes %d, cpu_weight %d", d.MemoryMB, d.MaxProcesses, d.CPUWeight)
	}
}
