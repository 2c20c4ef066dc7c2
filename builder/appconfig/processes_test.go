package appconfig

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/names"
)

var processTree = newFakeTree("src/app/wsgi.py", "bin/mailer.py", "bin/cleanup", "tasks.php", "lib/run.sh")

func TestProcessesValid(t *testing.T) {
	for _, tc := range []struct {
		name, ini string
		workers   []Worker
		crons     []CronJob
		tz        string
	}{
		{"worker with defaults", "worker.mailer = mailer.py --queue mail\n",
			[]Worker{{Name: "mailer", Command: "bin/mailer.py", Args: []string{"--queue", "mail"}, Count: 1, StopTimeout: 30, From: "app.ini:4"}}, nil, ""},
		{"worker settings", "worker.q = lib/run.sh\nworker.q.nodes = one\nworker.q.count = 16\nworker.q.stop_timeout = 5\n",
			[]Worker{{Name: "q", Command: "lib/run.sh", OneNode: true, Count: 16, StopTimeout: 5, From: "app.ini:4"}}, nil, ""},
		{"cron steps, ranges, names", "cron.clean = */5 1-5 * jan-mar mon-fri cleanup --all\ncron.clean.timeout = 60\n",
			nil, []CronJob{{Name: "clean", Schedule: "*/5 1-5 * jan-mar mon-fri", Command: "bin/cleanup", Args: []string{"--all"}, Timeout: 60}}, ""},
		{"cron descriptor and zone", "cron.nightly = @daily tasks.php\ncron_timezone = Europe/Paris\n",
			nil, []CronJob{{Name: "nightly", Schedule: "@daily", Command: "tasks.php", Timeout: 3600}}, "Europe/Paris"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, warnings, err := Parse("app.ini", []byte(minimalIni+tc.ini), "myapp", processTree)
			if err != nil || len(warnings) > 0 {
				t.Fatalf("Parse: %v, warnings %v", err, warnings)
			}
			if !reflect.DeepEqual(cfg.BackgroundWorkers, tc.workers) || !reflect.DeepEqual(cfg.CronJobs, tc.crons) || cfg.CronTimezone != tc.tz {
				t.Errorf("got workers %+v crons %+v tz %q", cfg.BackgroundWorkers, cfg.CronJobs, cfg.CronTimezone)
			}
		})
	}
}

func TestProcessesErrors(t *testing.T) {
	for _, tc := range []struct {
		name, ini string
		line      int
		want      string
	}{
		{"bad schedule", "cron.x = 61 * * * * bin/cleanup\n", 4, "not valid"},
		{"six fields make the command a field", "cron.x = * * * * * *\n", 4, "not a file of the app"},
		{"schedule only", "cron.x = 0 3 * * *\n", 4, "needs a schedule and a command"},
		{"never runs", "cron.x = 0 0 30 feb * bin/cleanup\n", 4, "never runs"},
		{"@every", "cron.x = @every 5m bin/cleanup\n", 4, "@every"},
		{"command outside the release", "worker.w = /usr/bin/python3 -m celery\n", 4, "absolute path"},
		{"command not in the tree", "worker.w = celery worker\n", 4, "not a file of the app"},
		{"dotdot", "worker.w = ../x\n", 4, ".."},
		{"count too high", "worker.w = bin/mailer.py\nworker.w.count = 17\n", 5, "from 1 to 16"},
		{"count zero", "worker.w = bin/mailer.py\nworker.w.count = 0\n", 5, "from 1 to 16"},
		{"bad nodes", "worker.w = bin/mailer.py\nworker.w.nodes = some\n", 5, "neither all nor one"},
		{"unknown attribute", "worker.w = bin/mailer.py\nworker.w.cont = 2\n", 5, "has no setting cont"},
		{"attribute without process", "worker.w.count = 2\n", 4, "worker.w is not"},
		{"bad name", "worker.Mail = bin/mailer.py\n", 4, "not a process name"},
		{"empty command", "worker.w =\n", 4, "names no command"},
		{"bad zone", "cron.x = @daily bin/cleanup\ncron_timezone = Mars/Olympus\n", 5, "not a time zone"},
		{"local zone", "cron.x = @daily bin/cleanup\ncron_timezone = Local\n", 5, "not a time zone"},
		{"cron timeout", "cron.x = @daily bin/cleanup\ncron.x.timeout = 0\n", 5, "from 1 to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse("app.ini", []byte(minimalIni+tc.ini), "myapp", processTree)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse: %v, want an error", err)
			}
			for _, e := range errs {
				if e.Line == tc.line && strings.Contains(e.Message, tc.want) {
					return
				}
			}
			t.Errorf("errors %v; want one on line %d containing %q", err, tc.line, tc.want)
		})
	}
}

func TestProcfile(t *testing.T) {
	data := "# processes\nweb: gunicorn app\nworker: bin/mailer.py --queue mail\nrelease: cleanup migrate\n\nclock: lib/run.sh $PORT\n"
	p, warnings, err := ParseProcfile([]byte(data), processTree)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 2 || warnings[0].Line != 2 || warnings[1].Line != 6 {
		t.Errorf("warnings %v; want web ignored (line 2) and no shell (line 6)", warnings)
	}
	want := Procfile{
		Workers: []Worker{
			{Name: "worker", Command: "bin/mailer.py", Args: []string{"--queue", "mail"}, Count: 1, StopTimeout: 30, From: "Procfile:3"},
			{Name: "clock", Command: "lib/run.sh", Args: []string{"$PORT"}, Count: 1, StopTimeout: 30, From: "Procfile:6"},
		},
		Release: &FetchItem{Script: "bin/cleanup", Args: []string{"migrate"}},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v, want %+v", p, want)
	}

	cfg, _, err := Parse("app.ini", []byte(minimalIni+"worker.worker = bin/cleanup\nupdate_fetch = /setup\n"), "myapp", processTree)
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.MergeProcfile(p); len(w) != 1 || !strings.Contains(w[0].Message, "app.ini:4, which wins") {
		t.Errorf("merge warnings %v", w)
	}
	if len(cfg.BackgroundWorkers) != 2 || cfg.BackgroundWorkers[0].Name != "clock" || cfg.BackgroundWorkers[1].Command != "bin/cleanup" {
		t.Errorf("merged workers %+v", cfg.BackgroundWorkers)
	}
	if len(cfg.UpdateFetch) != 2 || cfg.UpdateFetch[0].Script != "bin/cleanup" || cfg.UpdateFetch[1].URLPath != "/setup" {
		t.Errorf("merged update_fetch %+v", cfg.UpdateFetch)
	}

	for _, bad := range []struct{ data, want string }{
		{"worker bin/mailer.py\n", "not NAME: COMMAND"},
		{"Worker: bin/mailer.py\n", "not a process name"},
		{"w: celery\n", "not a file of the app"},
		{"w: bin/mailer.py\nw: bin/cleanup\n", "declared again (first on line 1)"},
		{strings.Repeat("#", maxProcfileSize+1), "limit"},
	} {
		if _, _, err := ParseProcfile([]byte(bad.data), processTree); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseProcfile(%.40q) = %v, want %q", bad.data, err, bad.want)
		}
	}
}

func TestNextRun(t *testing.T) {
	paris, err := LoadCronTimezone("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC) // a Friday, 13:00 in Paris
	for _, tc := range []struct {
		schedule string
		loc      *time.Location
		want     time.Time
	}{
		{"*/5 * * * *", time.UTC, time.Date(2026, 12, 4, 12, 5, 0, 0, time.UTC)},
		{"30 2 * * mon-fri", time.UTC, time.Date(2026, 12, 7, 2, 30, 0, 0, time.UTC)},
		{"0 14 * * *", paris, time.Date(2026, 12, 4, 13, 0, 0, 0, time.UTC)},
	} {
		got, err := NextRun(tc.schedule, tc.loc, from)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("NextRun(%q) = %v, %v; want %v", tc.schedule, got, err, tc.want)
		}
	}
}

func FuzzParseProcfile(f *testing.F) {
	f.Add([]byte("web: x\nworker: bin/mailer.py a b\nrelease: cleanup\n"))
	f.Add([]byte("w:\n:x\n\n#c\nx: ../../etc/passwd\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _, err := ParseProcfile(data, processTree)
		if err != nil {
			return
		}
		for _, w := range p.Workers {
			if !processTree.IsFile(w.Command) || !strings.HasPrefix(w.From, "Procfile:") {
				t.Fatalf("worker %+v runs something not in the tree", w)
			}
		}
	})
}

func FuzzCronLine(f *testing.F) {
	for _, s := range []string{"*/5 * * * * bin/x", "@daily x", "0 0 30 feb * x", "1-5,7 */2 ? * MON-FRI x a b", "@every 1s x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		schedule, command, problem := ParseCronLine(value)
		if problem != "" {
			return
		}
		if len(command) == 0 || CheckSchedule(schedule) != "" {
			t.Fatalf("ParseCronLine(%q) accepted %q %q", value, schedule, command)
		}
		if _, err := NextRun(schedule, time.UTC, time.Now()); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzProcesses feeds app.ini's [production] with worker.* and cron.* keys
// over a tree with a few commands: Parse never panics, and what it accepts
// is within what the nodes take (names, counts, timeouts, schedules,
// commands that are files of the tree).
func FuzzProcesses(f *testing.F) {
	for _, seed := range []string{
		"worker.mailer = mailer.py --queue mail\n",
		"worker.q = lib/run.sh\nworker.q.nodes = one\nworker.q.count = 16\nworker.q.stop_timeout = 5\n",
		"cron.clean = */5 1-5 * jan-mar mon-fri cleanup --all\ncron.clean.timeout = 60\n",
		"cron.nightly = @daily tasks.php\ncron_timezone = Europe/Paris\n",
		"worker.x.count = 17\nworker.Bad = a\ncron.c = 61 * * * * cleanup\ncron.d = 0 0 30 2 * cleanup\n",
		"worker.m = ../etc/passwd\ncron.e = @every 1m cleanup\ncron_timezone = Local\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, keys string) {
		cfg, _, err := Parse("app.ini", []byte(minimalIni+keys), "myapp", processTree)
		if err != nil {
			return
		}
		for _, w := range cfg.BackgroundWorkers {
			if !names.IsProcess(w.Name) || w.Count < 1 || w.Count > maxWorkerCount || w.StopTimeout < 1 || w.StopTimeout > maxStopTimeout || !processTree.IsFile(w.Command) {
				t.Errorf("accepted worker %+v", w)
			}
		}
		for _, j := range cfg.CronJobs {
			if !names.IsProcess(j.Name) || j.Timeout < 1 || j.Timeout > maxCronTimeout || CheckSchedule(j.Schedule) != "" || !processTree.IsFile(j.Command) {
				t.Errorf("accepted cron job %+v", j)
			}
		}
		if cfg.CronTimezone != "" {
			if _, err := LoadCronTimezone(cfg.CronTimezone); err != nil {
				t.Errorf("accepted cron_timezone %q: %v", cfg.CronTimezone, err)
			}
		}
	})
}
