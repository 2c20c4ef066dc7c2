package apps

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/builder/appconfig"
	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

func TestBranchLabel(t *testing.T) {
	long := strings.Repeat("feature-", 10) + "x"
	for branch, want := range map[string]string{
		"feature/login":     "feature-login",
		"Feature/Login_2":   "feature-login-2",
		"fix__double//bits": "fix-double-bits",
		"-/-":               "branch",
		"ünïcode":           "n-code",
	} {
		if got := branchLabel(branch); got != want {
			t.Errorf("branchLabel(%q) = %q, want %q", branch, got, want)
		}
	}
	a, b := branchLabel(long+"1"), branchLabel(long+"2")
	if len(a) > 63 || a == b || !strings.HasPrefix(a, "feature-feature-") {
		t.Errorf("long branches: %q and %q", a, b)
	}
}

func TestLocation(t *testing.T) {
	a := &Apps{cfg: Config{Domain: "apps.test"}}
	for _, tc := range []struct {
		name, branch string
		cfg          appconfig.Config
		want         string
	}{
		{"production default", "main", appconfig.Config{}, "blog.apps.test"},
		{"production default_location", "master", appconfig.Config{DefaultLocation: &appconfig.Location{Host: "blog.example.com"}}, "blog.example.com"},
		{"staging default", "feature/login", appconfig.Config{DefaultLocation: &appconfig.Location{Host: "blog.example.com"}}, "feature-login.blog.apps.test"},
		{"staging pattern", "feature/login", appconfig.Config{Staging: appconfig.Staging{Location: "{branch}.{app}.staging.example.com/x"}}, "feature-login.blog.staging.example.com/x"},
		{"branch section wins", "beta", appconfig.Config{Staging: appconfig.Staging{Location: "{branch}.a.example.com"},
			BranchLocations: map[string]appconfig.Location{"beta": {Host: "beta.example.com"}}}, "beta.example.com"},
	} {
		r := &builder.Release{App: "blog", Branch: tc.branch, Config: &tc.cfg}
		if got := a.location(r).String(); got != tc.want {
			t.Errorf("%s: location %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCheckLocationsNamesBothBranches(t *testing.T) {
	srv := &Apps{cfg: Config{Domain: "apps.test", DataDir: t.TempDir()}}
	srv.history = builder.History{Dir: srv.cfg.releasesDir()}
	mk := func(branch string) *builder.Release {
		return &builder.Release{App: "blog", Branch: branch, Instance: names.Instance(branch), Config: &appconfig.Config{}}
	}
	a, b := mk("feature/x"), mk("feature_x")
	spec := func(r *builder.Release) agent.Spec { return agent.Spec{Locations: []agent.Location{srv.location(r)}} }
	err := srv.checkLocations(zerolog.Nop(), "blog", []*builder.Release{a, b}, []agent.Spec{spec(a), spec(b)})
	if err == nil || !strings.Contains(err.Error(), "branches feature/x and feature_x would both answer at http://feature-x.blog.apps.test") {
		t.Fatalf("checkLocations = %v", err)
	}
	if err := srv.checkLocations(zerolog.Nop(), "blog", []*builder.Release{a, mk("main")}, []agent.Spec{spec(a), spec(mk("main"))}); err != nil {
		t.Fatalf("distinct locations refused: %v", err)
	}
}

func TestStagingRefusal(t *testing.T) {
	for _, tc := range []struct {
		receiver, app []string
		branch        string
		want          string // "" = deployed
	}{
		{nil, nil, "feature-x", ""},
		{nil, nil, "main", ""},
		{[]string{}, nil, "main", ""},
		{[]string{}, nil, "feature-x", "the receiver's staging_branches (none) does not include it"},
		{[]string{"staging", "feature-*"}, nil, "feature-x", ""},
		{[]string{"staging", "feature-*"}, nil, "hotfix", "staging_branches (staging, feature-*)"},
		{nil, []string{"feature/*"}, "feature/login", ""},
		{nil, []string{"feature*"}, "feature/login/x", ""},
		{nil, []string{"fix-?"}, "fix-12", "app.ini's"},
		{nil, []string{"a.b"}, "axb", "app.ini's"},
		{nil, []string{"feature/*"}, "experiment", "app.ini's [staging] branches (feature/*) does not include it"},
		{[]string{"feature-*"}, []string{"*"}, "other", "the receiver's staging_branches"},
	} {
		a := &Apps{cfg: Config{StagingBranches: tc.receiver}}
		got := a.stagingRefusal(tc.branch, tc.app)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("stagingRefusal(%q) with %v/%v = %q, want %q", tc.branch, tc.receiver, tc.app, got, tc.want)
		}
	}
	if _, err := parseBranchGlobs("ok, b[ad"); err == nil {
		t.Error("a bad glob passed")
	}
	if _, err := parseBranchGlobs("$(x)"); err == nil {
		t.Error("a bad glob passed")
	}
}
