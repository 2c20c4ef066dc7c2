package apps

import (
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/names"
)

func TestRunSpec(t *testing.T) {
	a := &Apps{cfg: Config{Domain: "apps.test", KeepReleases: 4, Version: "1.2"}, config: &configStore{dir: t.TempDir()}}
	cfg := &appconfig.Config{AppName: "blog", Platform: appconfig.PlatformPython, Runner: appconfig.Runner{Path: "wsgi.py", Object: "app"},
		HealthCheck: "/health", Config: map[string]string{"Mail.From-Address": "me@example.com"},
		UpdateFetch: []appconfig.FetchItem{{URLPath: "/setup"}, {Script: "bin/migrate", Args: []string{"a b"}}}}
	prod := &builder.Release{App: "blog", Instance: names.Instance("main"), Branch: "main", Number: 3, Commit: "abc", Config: cfg}
	spec, err := a.runSpec(prod)
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := spec.Locations[0].String(); got != "blog.apps.test" {
		t.Errorf("default location %q", got)
	}
	for k, want := range map[string]string{"SILVER_APP_NAME": "blog", "SILVER_INSTANCE_NAME": "blog@main", "SILVER_CANONICAL_HOSTNAME": "blog.apps.test",
		"SILVER_VERSION": "gitreceive/1.2", "SILVER_RELEASE": "3", "CONFIG_MAIL_FROM_ADDRESS": "me@example.com"} {
		if spec.Env[k] != want {
			t.Errorf("env %s = %q, want %q", k, spec.Env[k], want)
		}
	}
	if spec.Callable != "app" || spec.KeepReleases != 4 || len(spec.UpdateFetch) != 2 || spec.UpdateFetch[1].Args[0] != "a b" {
		t.Errorf("spec %+v", spec)
	}

	cfg.DefaultLocation = &appconfig.Location{Host: "example.com", Path: "/blog"}
	staging := &builder.Release{App: "blog", Instance: names.Instance("Feature/Login_2"), Branch: "Feature/Login_2", Number: 1, Config: cfg}
	if spec, err = a.runSpec(staging); err != nil {
		t.Fatal(err)
	}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	// A staging branch answers at BRANCH.APP.DOMAIN, not under production's
	// default_location (staging_test.go has the other rules).
	if got := spec.Locations[0].String(); got != "feature-login-2.blog.apps.test" {
		t.Errorf("staging location %q", got)
	}
	// Idle staging workers stop when the receiver says so; production's never.
	a.cfg.StagingIdle = 90 * time.Minute
	if spec, _ = a.runSpec(staging); spec.IdleStop != 5400 {
		t.Errorf("staging idle_stop %d", spec.IdleStop)
	}
	if spec, _ = a.runSpec(prod); spec.IdleStop != 0 {
		t.Errorf("production idle_stop %d", spec.IdleStop)
	}
}

// Workers and cron jobs reach the nodes' spec; staging_workers = off keeps
// them from staging instances, never from production.
func TestRunSpecProcesses(t *testing.T) {
	a := &Apps{cfg: Config{Domain: "apps.test", Version: "1.2"}, config: &configStore{dir: t.TempDir()}}
	cfg := &appconfig.Config{AppName: "blog", Platform: appconfig.PlatformPython, Runner: appconfig.Runner{Path: "wsgi.py"}, HealthCheck: "/",
		BackgroundWorkers: []appconfig.Worker{{Name: "mailer", Command: "bin/mailer.py", Args: []string{"-q"}, Count: 2, StopTimeout: 10, OneNode: true}},
		CronJobs:          []appconfig.CronJob{{Name: "nightly", Schedule: "@daily", Command: "bin/clean", Timeout: 60}}, CronTimezone: "Europe/Paris"}
	prod := &builder.Release{App: "blog", Instance: names.Instance("main"), Branch: "main", Number: 1, Config: cfg}
	staging := &builder.Release{App: "blog", Instance: names.Instance("feature"), Branch: "feature", Number: 1, Config: cfg}
	for _, tt := range []struct {
		off     bool
		r       *builder.Release
		running bool
	}{{false, prod, true}, {false, staging, true}, {true, staging, false}, {true, prod, true}} {
		a.cfg.StagingWorkersOff = tt.off
		spec, err := a.runSpec(tt.r)
		if err != nil {
			t.Fatal(err)
		}
		if err := spec.Validate(); err != nil {
			t.Fatal(err)
		}
		got := len(spec.BackgroundWorkers) == 1 && len(spec.CronJobs) == 1
		if got != tt.running || len(spec.BackgroundWorkers)+len(spec.CronJobs) == 1 {
			t.Errorf("staging_workers off=%v, %s: workers %+v cron %+v", tt.off, tt.r.Branch, spec.BackgroundWorkers, spec.CronJobs)
		}
		if got {
			w, j := spec.BackgroundWorkers[0], spec.CronJobs[0]
			if w.Name != "mailer" || w.Count != 2 || w.StopTimeout != 10 || !w.OneNode || w.Args[0] != "-q" ||
				j.Schedule != "@daily" || j.Timeout != 60 || spec.CronTimezone != "Europe/Paris" {
				t.Errorf("spec %+v %+v %q", w, j, spec.CronTimezone)
			}
		}
	}
}
