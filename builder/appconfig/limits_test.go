package appconfig

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		mb   int
		want error
	}{
		{"512", 512, nil},
		{"512M", 512, nil},
		{"256m", 256, nil},
		{"1G", 1024, nil},
		{"2g", 2048, nil},
		{"1GB", 1024, nil},
		{"64mb", 64, nil},
		{"0", 0, nil},
		{"0001G", 1024, nil},
		{"16384G", MemoryCeilingMB, nil},
		{"16385G", 0, ErrSizeTooLarge},
		{"16777217", 0, ErrSizeTooLarge},
		{"999999999999999999999999999G", 0, ErrSizeTooLarge},
		{"", 0, ErrSizeSyntax},
		{"G", 0, ErrSizeSyntax},
		{"1.5G", 0, ErrSizeSyntax},
		{"-1", 0, ErrSizeSyntax},
		{"+1", 0, ErrSizeSyntax},
		{"1 G", 0, ErrSizeSyntax},
		{" 1G", 0, ErrSizeSyntax},
		{"1K", 0, ErrSizeSyntax},
		{"1T", 0, ErrSizeSyntax},
		{"1B", 0, ErrSizeSyntax},
		{"1Gi", 0, ErrSizeSyntax},
		{"１G", 0, ErrSizeSyntax}, // a full-width digit
		{"0x10", 0, ErrSizeSyntax},
	} {
		t.Run(tc.in, func(t *testing.T) {
			mb, err := ParseSize(tc.in)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) || mb != tc.mb {
				t.Errorf("ParseSize(%q) = %d, %v; want %d, %v", tc.in, mb, err, tc.mb, tc.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	for mb, want := range map[int]string{0: "0M", 32: "32M", 512: "512M", 1024: "1G", 1536: "1536M", 4096: "4G", MemoryCeilingMB: "16384G"} {
		if got := FormatSize(mb); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", mb, got, want)
		}
		if back, err := ParseSize(FormatSize(mb)); err != nil || back != mb {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", mb, back, err)
		}
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	if got := (Limits{}).WithDefaults(); got != DefaultLimits() {
		t.Errorf("zero Limits = %+v, want %+v", got, DefaultLimits())
	}
	got := Limits{MaxMemoryMB: 8192, DefaultMaxProcesses: 64}.WithDefaults()
	if want := (Limits{DefaultMemoryMB: 512, MaxMemoryMB: 8192, DefaultMaxProcesses: 64, MaxProcesses: 1024}); got != want {
		t.Errorf("partial Limits = %+v, want %+v", got, want)
	}
}

func TestResources(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keys   string // added to minimalIni
		limits Limits
		want   Resources
	}{
		{"receiver defaults", "", Limits{}, Resources{MemoryMB: 512, MaxProcesses: 128, Workers: 2, ReloadOnRSS: 256}},
		{"receiver's own defaults", "", Limits{DefaultMemoryMB: 2048, DefaultMaxProcesses: 300},
			Resources{MemoryMB: 2048, MaxProcesses: 300, Workers: 2, ReloadOnRSS: 512}},
		{"app.ini wins", "memory = 1G\nmax_processes = 40\nworkers = 8\n", Limits{},
			Resources{MemoryMB: 1024, MaxProcesses: 40, Workers: 8, ReloadOnRSS: 128}},
		{"reload_on_rss is each worker's share", "memory = 600M\nworkers = 4\n", Limits{},
			Resources{MemoryMB: 600, MaxProcesses: 128, Workers: 4, ReloadOnRSS: 150}},
		{"reload_on_rss at most 512", "memory = 4G\nworkers = 2\n", Limits{},
			Resources{MemoryMB: 4096, MaxProcesses: 128, Workers: 2, ReloadOnRSS: 512}},
		{"explicit reload_on_rss kept", "memory = 4G\nreload_on_rss = 1024\n", Limits{},
			Resources{MemoryMB: 4096, MaxProcesses: 128, Workers: 2, ReloadOnRSS: 1024}},
		{"a share under 1 MB is 1 MB, never the agent's 512", "memory = 32M\nworkers = 64\n", Limits{},
			Resources{MemoryMB: 32, MaxProcesses: 128, Workers: 64, ReloadOnRSS: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, minimalIni+tc.keys)
			if got := cfg.Resources(tc.limits); got != tc.want {
				t.Errorf("Resources = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// limitError is one error CheckLimits must report: at line, about key,
// with every one of facts in its text.
type limitError struct {
	line  int
	key   string
	facts []string
}

func TestCheckLimits(t *testing.T) {
	small := Limits{DefaultMemoryMB: 256, MaxMemoryMB: 1024, DefaultMaxProcesses: 10, MaxProcesses: 20}
	for _, tc := range []struct {
		name   string
		keys   string // added to minimalIni, whose last line is 3
		limits Limits
		want   []limitError // nil: accepted
	}{
		{"nothing set", "", Limits{}, nil},
		{"nothing set, small receiver", "", small, nil},
		{"memory at the cap", "memory = 4G\n", Limits{}, nil},
		{"memory above the cap", "workers = 2\nmemory = 8G\n", Limits{}, []limitError{{5, "memory",
			[]string{"app.ini:5: memory: 8G is more than this receiver allows (max_memory = 4G); lower memory or ask the operator to raise max_memory"}}}},
		{"memory above the cap written in megabytes", "memory = 1025\n", small, []limitError{{4, "memory",
			[]string{"1025 is more than this receiver allows (max_memory = 1G)"}}}},
		{"max_processes at the cap", "max_processes = 1024\n", Limits{}, nil},
		{"max_processes above the cap", "max_processes = 2000\n", Limits{}, []limitError{{4, "max_processes",
			[]string{"2000 is more than this receiver allows", "max_processes setting = 1024", "lower max_processes", "ask the operator"}}}},
		{"workers x reload_on_rss fits memory", "memory = 1G\nworkers = 4\nreload_on_rss = 256\n", Limits{}, nil},
		{"workers x reload_on_rss over memory", "memory = 1G\nworkers = 4\nreload_on_rss = 300\n", Limits{}, []limitError{{6, "reload_on_rss",
			[]string{"workers (line 5) x reload_on_rss = 4 x 300 MB = 1200 MB", "memory = 1G (line 4)", "lower reload_on_rss to 256 or less", "fewer workers", "set memory = 1200M or more"}}}},
		{"default workers x reload_on_rss over the receiver's default memory", "reload_on_rss = 200\n", small, []limitError{{4, "reload_on_rss",
			[]string{"workers (not set, so the default) x reload_on_rss = 2 x 200 MB = 400 MB", "256M", "default_memory", "set memory = 400M or more", "lower reload_on_rss to 128"}}}},
		{"a share too small for any reload_on_rss", "memory = 32M\nworkers = 4\nreload_on_rss = 16\n", Limits{}, []limitError{{6, "reload_on_rss",
			[]string{"4 x 16 MB = 64 MB", "use fewer workers or set memory = 64M or more"}}}},
		{"more memory is not offered beyond the cap", "memory = 1G\nworkers = 8\nreload_on_rss = 1024\n", Limits{}, []limitError{{6, "reload_on_rss",
			[]string{"8 x 1024 MB = 8192 MB", "; lower reload_on_rss to 128 or less or use fewer workers"}}}},
		{"implicit reload_on_rss never refused", "memory = 32M\nworkers = 64\n", Limits{}, nil},
		{"workers fit max_processes", "workers = 4\nmax_processes = 8\n", Limits{}, nil},
		{"workers beyond max_processes", "workers = 5\nmax_processes = 8\n", Limits{}, []limitError{{4, "workers",
			[]string{"5 workers need max_processes = 9 or more", "max_processes = 8 (line 5)", "set max_processes = 9 or more", "use 4 workers or fewer"}}}},
		{"workers beyond the receiver's default_max_processes", "workers = 8\n", small, []limitError{{4, "workers",
			[]string{"8 workers need max_processes = 12", "default_max_processes is 10", "set max_processes = 12 or more (this receiver allows up to 20)"}}}},
		{"workers beyond what the receiver allows", "workers = 20\n", small, []limitError{{4, "workers",
			[]string{"20 workers need max_processes = 24", "allows at most max_processes = 20, so use 16 workers or fewer", "ask the operator"}}}},
		{"every problem at once", "memory = 5G\nmax_processes = 60\nworkers = 64\nreload_on_rss = 100\n", Limits{MaxProcesses: 50}, []limitError{
			{4, "memory", []string{"max_memory = 4G"}},
			{5, "max_processes", []string{"max_processes setting = 50"}},
			{6, "workers", []string{"64 workers need max_processes = 68", "max_processes = 60 (line 5)", "use 46 workers or fewer"}},
			{7, "reload_on_rss", []string{"64 x 100 MB = 6400 MB", "memory = 5G (line 4)"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, minimalIni+tc.keys)
			err := cfg.CheckLimits(tc.limits)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckLimits: %v", err)
				}
				return
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != len(tc.want) {
				t.Fatalf("CheckLimits = %v, want %d errors", err, len(tc.want))
			}
			for _, want := range tc.want {
				e := findError(errs, want.key)
				if e == nil {
					t.Fatalf("no error about %s in:\n%v", want.key, err)
				}
				msg := e.Error()
				if prefix := position("app.ini", want.line) + ": " + want.key + ": "; e.Line != want.line || !strings.HasPrefix(msg, prefix) {
					t.Errorf("error %q does not start with %q", msg, prefix)
				}
				for _, fact := range want.facts {
					if !strings.Contains(msg, fact) {
						t.Errorf("error %q does not mention %q", msg, fact)
					}
				}
				if strings.Contains(msg, "\n") {
					t.Errorf("error %q is more than one line", msg)
				}
			}
		})
	}
}

// A Config from a symlinked app.ini names the file as Parse's errors do;
// one made in code (no positions) still says which key.
func TestCheckLimitsNamesTheFile(t *testing.T) {
	cfg, _, err := Parse("app.ini -> src/sample/silver-app.ini", []byte(minimalIni+"memory = 5G\n"), "myapp", sampleTree)
	if err != nil {
		t.Fatal(err)
	}
	want := "app.ini -> src/sample/silver-app.ini:4: memory: 5G is more than this receiver allows (max_memory = 4G); lower memory or ask the operator to raise max_memory"
	if err := cfg.CheckLimits(Limits{}); err == nil || err.Error() != want {
		t.Errorf("CheckLimits = %v, want %s", err, want)
	}
	inCode := &Config{MemoryMB: 5 << 10}
	if err := inCode.CheckLimits(Limits{}); err == nil || !strings.HasPrefix(err.Error(), "app.ini: memory: 5G is more than") {
		t.Errorf("CheckLimits of a Config made in code = %v", err)
	}
}

func mustParse(t *testing.T, data string) *Config {
	t.Helper()
	cfg, _, err := Parse("app.ini", []byte(data), "myapp", sampleTree)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}
