package apps

import (
	"slices"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

func TestPackagesAllowedSetting(t *testing.T) {
	testListSetting(t, func(c Config) []string { return c.PackagesAllowed }, []listSettingCase{
		{"", nil, ""},
		{"packages_allowed = none\n", []string{}, ""},
		{"packages_allowed = python3-*, php8.2-* libjs-jquery\n", []string{"python3-*", "php8.2-*", "libjs-jquery"}, ""},
		{"packages_allowed = python3-[\n", nil, `"python3-[" is not a package name or glob`},
		{"packages_allowed = $(id)\n", nil, `"$(id)" is not a package name or glob`},
	})
}

func TestCheckAllowedPackages(t *testing.T) {
	release := func(pkgs ...string) []*builder.Release {
		return []*builder.Release{{App: "blog", Config: &appconfig.Config{Packages: pkgs}}}
	}
	for _, tc := range []struct {
		allowed []string
		pkgs    []string
		wantErr string
	}{
		{nil, []string{"python3-django", "php-mysql", "php8.2-gd"}, ""},
		{nil, []string{"python3-django", "openssh-server"}, "openssh-server is not a package this receiver installs for apps (packages_allowed = python3-*, php-*, php8.*-*)"},
		{[]string{}, []string{"python3-django"}, "packages_allowed = none"},
		{[]string{"libjs-*"}, []string{"libjs-jquery"}, ""},
	} {
		a := &Apps{cfg: Config{PackagesAllowed: tc.allowed}}
		err := a.checkAllowedPackages(release(tc.pkgs...))
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("allowed %v, packages %v: %v, want %q", tc.allowed, tc.pkgs, err, tc.wantErr)
		}
	}
}

func TestLivePackages(t *testing.T) {
	dir := t.TempDir()
	a := &Apps{cfg: Config{DataDir: dir}}
	a.history = builder.History{Dir: a.cfg.releasesDir()}
	rec := func(app, instance string, n int, pkgs ...string) {
		r := &builder.Release{App: app, Instance: instance, Number: n, Config: &appconfig.Config{}}
		if err := a.record(r, agent.Spec{Packages: pkgs}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := LivePackages(dir); err != nil || len(got) != 0 {
		t.Fatalf("no releases: %v %v", got, err)
	}
	rec("blog", "production", 1, "php-gd")
	rec("blog", "production", 2, "php-intl", "php-mysql") // the newest counts
	rec("shop", "branch-x", 1, "python3-django", "php-mysql")
	got, err := LivePackages(dir)
	if want := []string{"php-intl", "php-mysql", "python3-django"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("LivePackages = %v, %v; want %v", got, err, want)
	}
}
