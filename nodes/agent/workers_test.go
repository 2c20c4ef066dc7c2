package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateProcesses(t *testing.T) {
	worker := WorkerSpec{Name: "mailer", Command: "bin/mailer.py", Count: 2, StopTimeout: 30}
	job := CronSpec{Name: "nightly", Schedule: "30 2 * * mon-fri", Command: "bin/clean", Timeout: 3600}
	tests := []struct {
		name  string
		edit  func(*Spec)
		wantE string // "" valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"timezone", func(s *Spec) { s.CronTimezone = "America/Argentina/Buenos_Aires" }, ""},
		{"bad worker name", func(s *Spec) { s.BackgroundWorkers[0].Name = "Mailer" }, "not a process name"},
		{"command outside", func(s *Spec) { s.BackgroundWorkers[0].Command = "../x" }, "command"},
		{"absolute command", func(s *Spec) { s.BackgroundWorkers[0].Command = "/bin/sh" }, "command"},
		{"count 0", func(s *Spec) { s.BackgroundWorkers[0].Count = 0 }, "out of range"},
		{"count 17", func(s *Spec) { s.BackgroundWorkers[0].Count = 17 }, "out of range"},
		{"stop 0", func(s *Spec) { s.BackgroundWorkers[0].StopTimeout = 0 }, "out of range"},
		{"NUL arg", func(s *Spec) { s.BackgroundWorkers[0].Args = []string{"a\x00"} }, "NUL"},
		{"twice", func(s *Spec) { s.BackgroundWorkers = append(s.BackgroundWorkers, worker) }, "declared twice"},
		{"cron timeout", func(s *Spec) { s.CronJobs[0].Timeout = 0 }, "timeout"},
		{"cron schedule lines", func(s *Spec) { s.CronJobs[0].Schedule = "* * * * *\n* * * * *" }, "one line"},
		{"cron twice", func(s *Spec) { s.CronJobs = append(s.CronJobs, job) }, "declared twice"},
		{"bad timezone", func(s *Spec) { s.CronTimezone = "../../etc/passwd" }, "time zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Spec{BackgroundWorkers: []WorkerSpec{worker}, CronJobs: []CronSpec{job}}
			tt.edit(&s)
			err := s.validateProcesses()
			if tt.wantE == "" && err != nil || tt.wantE != "" && (err == nil || !strings.Contains(err.Error(), tt.wantE)) {
				t.Fatalf("validateProcesses() = %v, want %q", err, tt.wantE)
			}
		})
	}
}

func TestHoldsSingletons(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		hold       string // "": no hold file
		singletons bool
		want       bool
	}{
		{"", false, false},
		{"", true, true},
		{"on\n", false, true},
		{"off\n", true, false},
		{"garbage", true, false},
	} {
		os.Remove(singletonsHoldPath(dir))
		if tt.hold != "" {
			if err := os.WriteFile(singletonsHoldPath(dir), []byte(tt.hold), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got := holdsSingletons(dir, Spec{Singletons: tt.singletons}); got != tt.want {
			t.Errorf("holdsSingletons(hold %q, Singletons %v) = %v, want %v", tt.hold, tt.singletons, got, tt.want)
		}
	}
}

func TestRunsWorkers(t *testing.T) {
	one := Spec{BackgroundWorkers: []WorkerSpec{{Name: "b", OneNode: true}}}
	both := Spec{BackgroundWorkers: []WorkerSpec{{Name: "a"}, {Name: "b", OneNode: true}}}
	for _, tt := range []struct {
		spec Spec
		held bool
		want bool
	}{
		{Spec{}, true, false},
		{one, false, false},
		{one, true, true},
		{both, false, true},
	} {
		if got := tt.spec.runsWorkers(tt.held); got != tt.want {
			t.Errorf("runsWorkers(%v) of %+v = %v, want %v", tt.held, tt.spec.BackgroundWorkers, got, tt.want)
		}
	}
}

func TestHoldGate(t *testing.T) {
	g := newHoldGate(false)
	held, changed := g.get()
	g.set(false) // no change: nobody wakes
	select {
	case <-changed:
		t.Fatal("a set to the same hold woke the waiters")
	default:
	}
	g.set(true)
	select {
	case <-changed:
	default:
		t.Fatal("a change of the hold did not wake the waiters")
	}
	if now, next := g.get(); held || !now || next == changed {
		t.Fatalf("after set(true): held %v, a new channel %v", now, next != changed)
	}
}

func TestCrashLoops(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, runDirName), 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := workersState{Release: 4, Processes: []processState{
		{Name: "ok", Index: 1, PID: 10, Started: now.Add(-time.Hour)},
		{Name: "crash", Index: 1, CrashLoop: true, LastExit: "exit status 1"},               // waiting to start again
		{Name: "crash", Index: 2, CrashLoop: true, PID: 12, Started: now.Add(-time.Second)}, // just started again
		{Name: "healed", Index: 1, CrashLoop: true, PID: 13, Started: now.Add(-time.Minute)},
		{Name: "missing", Index: 1, Error: "script \"bin/x\" is not in the release"},
		{Name: "single", Index: 1, OneNode: true, Elsewhere: true},
	}}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(workersStatePath(dir, 4), data, 0o640); err != nil {
		t.Fatal(err)
	}
	if got := crashLoops(dir, 4, now); strings.Join(got, ",") != "crash,missing" {
		t.Fatalf("crashLoops = %q, want crash and missing", got)
	}
	if got := crashLoops(dir, 3, now); got != nil {
		t.Fatalf("crashLoops of a release without a state = %q", got)
	}
	if got := crashLoops(dir, 0, now); got != nil {
		t.Fatalf("crashLoops without a live release = %q", got)
	}
}

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		early int
		want  time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {7, time.Minute}, {100, time.Minute}} {
		if got := backoff(tt.early); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.early, got, tt.want)
		}
	}
}

func TestEarlyFailures(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := workersState{Processes: []processState{
		{Name: "ok", Index: 1, PID: 10, Started: start},
		{Name: "crash", Index: 1, Started: start, ExitedAt: start.Add(1500 * time.Millisecond), Restarts: 1, LastExit: "exit status 1"},
		{Name: "crash", Index: 2, Started: start, ExitedAt: start.Add(time.Second), Restarts: 1, LastExit: "exit status 1"},
		{Name: "missing", Index: 1, Error: "script \"bin/x\" is not in the release"},
	}}
	got := earlyFailures(st)
	if len(got) != 2 || !strings.Contains(got[0], "worker crash exited 1.5 s after its start (exit status 1)") ||
		!strings.Contains(got[0], "logs --process crash") || !strings.Contains(got[1], "worker missing cannot start") {
		t.Fatalf("earlyFailures = %q", got)
	}
	if got := earlyFailures(workersState{Processes: st.Processes[:1]}); len(got) != 0 {
		t.Fatalf("a running worker is reported: %q", got)
	}
}

func TestWorkersVassal(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		content string
		ok      bool
	}{
		{"; comment\n" + workersMarker + " shop main 3\n[uwsgi]\n", true},
		{workersMarker + " shop main\n", false},
		{workersMarker + " shop main 0\n", false},
		{workersMarker + " Shop; main 3\n", false},
		{"[uwsgi]\nsocket = x\n", false},
	} {
		p := filepath.Join(dir, "v.ini")
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		app, instance, n, ok := workersVassal(p)
		if ok != tt.ok || ok && (app != "shop" || instance != "main" || n != 3) {
			t.Errorf("workersVassal(%q) = %q %q %d %v", tt.content, app, instance, n, ok)
		}
	}
}

func TestCappedLogRotates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "worker.x.log")
	l, err := openCappedLog(p, os.Getgid(), 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := l.Write([]byte(strings.Repeat("x", 39) + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	cur, _ := os.ReadFile(p)
	old, _ := os.ReadFile(p + ".1")
	// 40-byte lines under a 100-byte cap: two fit, the third starts a new
	// file; the log before last is dropped.
	if len(cur) != 40 || len(old) != 80 {
		t.Fatalf("after 200 bytes: %d in the log, %d in .1; want 40 and 80", len(cur), len(old))
	}
}

func TestNextCronRun(t *testing.T) {
	now := time.Date(2026, 3, 6, 10, 7, 30, 0, time.UTC) // a Friday
	for _, tt := range []struct {
		schedule, tz string
		want         time.Time
	}{
		{"*/5 * * * *", "", time.Date(2026, 3, 6, 10, 10, 0, 0, time.UTC)},
		{"0 9 * * mon-fri", "", time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC)},
		{"@daily", "", time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC)},
		{"0 12 * * *", "Europe/Paris", time.Date(2026, 3, 6, 11, 0, 0, 0, time.UTC)},
		{"not a schedule", "", time.Time{}},
	} {
		spec := Spec{CronTimezone: tt.tz}
		if got := nextCronRun(spec, CronSpec{Schedule: tt.schedule}, now); !got.Equal(tt.want) {
			t.Errorf("nextCronRun(%q, %q) = %v, want %v", tt.schedule, tt.tz, got, tt.want)
		}
	}
}
