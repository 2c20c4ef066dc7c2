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
