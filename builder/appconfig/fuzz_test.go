package appconfig

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/ini.v1"
)

func FuzzParse(f *testing.F) {
	var seeds []string
	for _, tc := range validCases {
		seeds = append(seeds, tc.ini)
	}
	for _, tc := range errorCases {
		seeds = append(seeds, tc.ini)
	}
	for _, tc := range warningCases {
		seeds = append(seeds, tc.ini)
	}
	// The resource keys beside the worker keys they are checked against.
	seeds = append(seeds, minimalIni+"memory = 64M\nworkers = 64\nreload_on_rss = 16\nmax_processes = 8\ncpu_weight = 100\n",
		minimalIni+"memory = 16384G\nmax_processes = 4194304\n")
	for _, seed := range seeds {
		// The few big table inputs (limits, long values) only slow the
		// fuzzer down: it spends minutes minimizing what grows from them.
		if len(seed) <= 4<<10 {
			f.Add([]byte(seed), "myapp")
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, appName string) {
		checkLineIndexAgrees(t, data)
		cfg, warnings, err := Parse("app.ini", data, appName, sampleTree)
		for _, w := range warnings {
			if !strings.HasPrefix(w.String(), "app.ini") {
				t.Errorf("warning %q does not name the file", w)
			}
		}
		if err != nil {
			if cfg != nil {
				t.Errorf("Parse returned a Config with error %v", err)
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %q is not a non-empty Errors", err, err)
			}
			for _, e := range errs {
				if e.File != "app.ini" || e.Message == "" || e.Line < 0 {
					t.Errorf("malformed error %+v", e)
				}
			}
			return
		}
		if cfg == nil {
			t.Fatal("Parse returned neither a Config nor an error")
		}
		if cfg.AppName != appName {
			t.Errorf("AppName = %q, want %q", cfg.AppName, appName)
		}
		if cfg.Runner.Path == "" || !sampleTree.IsFile(cfg.Runner.Path) {
			t.Errorf("Runner.Path = %q, not a file in the tree", cfg.Runner.Path)
		}
		if !strings.HasPrefix(cfg.HealthCheck, "/") {
			t.Errorf("HealthCheck = %q, does not start with /", cfg.HealthCheck)
		}
		if cfg.Platform != PlatformPython && cfg.Platform != PlatformPHP {
			t.Errorf("Platform = %q", cfg.Platform)
		}
		for _, item := range cfg.UpdateFetch {
			if (item.URLPath == "") == (item.Script == "") {
				t.Errorf("update_fetch item %+v sets both or neither of URLPath and Script", item)
			}
		}
		if loc := cfg.DefaultLocation; loc != nil && (loc.Host == "" || strings.HasSuffix(loc.Path, "/")) {
			t.Errorf("DefaultLocation = %+v", loc)
		}
		checkLimitsHold(t, cfg)
	})
}

// checkLineIndexAgrees checks that indexLines finds a line for every key
// the ini parser reads, and a bad line whenever the parser fails: line
// numbers in messages are only as good as that agreement.
func checkLineIndexAgrees(t *testing.T, data []byte) {
	t.Helper()
	if _, problem := textProblem(data); problem != "" {
		return
	}
	ix := indexLines(data)
	if ix.overSections > 0 || ix.overKeys > 0 || ix.longValue > 0 {
		return // Parse does not run the parser on these
	}
	file, err := load(data)
	if err != nil {
		if ix.bad.line == 0 {
			t.Errorf("the parser fails (%v) but indexLines found no bad line", err)
		}
		return
	}
	for _, section := range file.Sections() {
		if section.Name() != ini.DefaultSection && ix.headerLine(section.Name()) == 0 {
			t.Errorf("no line for section [%s]", section.Name())
		}
		for _, key := range section.Keys() {
			if ix.keyLine(section.Name(), key.Name()) == 0 {
				t.Errorf("no line for [%s] %q", section.Name(), key.Name())
			}
		}
	}
}

// checkLimitsHold checks what the receiver does with a parsed Config:
// against the default limits and a small receiver's, CheckLimits answers
// with errors that name app.ini, a key and nothing over one line, and
// every Config it accepts runs within the limits.
func checkLimitsHold(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.MemoryMB != 0 && (cfg.MemoryMB < MinMemoryMB || cfg.MemoryMB > MemoryCeilingMB) {
		t.Errorf("MemoryMB = %d", cfg.MemoryMB)
	}
	for _, l := range []Limits{{}, {DefaultMemoryMB: 64, MaxMemoryMB: 128, DefaultMaxProcesses: 8, MaxProcesses: 16}} {
		err := cfg.CheckLimits(l)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("CheckLimits error %T %q is not a non-empty Errors", err, err)
			}
			for _, e := range errs {
				if e.File != "app.ini" || e.Key == "" || strings.Contains(e.Message, "\n") {
					t.Errorf("malformed CheckLimits error %+v", e)
				}
			}
			continue
		}
		l = l.WithDefaults()
		r := cfg.Resources(l)
		if r.MemoryMB > l.MaxMemoryMB || r.MaxProcesses > l.MaxProcesses || r.Workers+ExtraProcesses > r.MaxProcesses ||
			r.ReloadOnRSS < 1 || (cfg.ReloadOnRSS != 0 && r.Workers*r.ReloadOnRSS > r.MemoryMB) {
			t.Errorf("CheckLimits(%+v) accepted %+v", l, r)
		}
	}
}
