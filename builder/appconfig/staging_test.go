package appconfig

import (
	"reflect"
	"strings"
	"testing"
)

func TestStagingSections(t *testing.T) {
	for _, tc := range []struct {
		name    string
		extra   string
		staging Staging
		branch  map[string]Location
		err     string // "" = valid
		warning string
	}{
		{name: "none", extra: ""},
		{name: "pattern with app", extra: "[staging]\nlocation = {branch}-{app}.example.com\n", staging: Staging{Location: "{branch}-{app}.example.com"}},
		{name: "no staging branch", extra: "[staging]\nbranches = none\n", staging: Staging{Branches: []string{}}},
		{name: "globs", extra: "[staging]\nbranches = staging feature/*, re?ease\n", staging: Staging{Branches: []string{"staging", "feature/*", "re?ease"}}},
		{name: "branch location with path", extra: "[branch:feature/x]\nlocation = example.com/x\n", branch: map[string]Location{"feature/x": {Host: "example.com", Path: "/x"}}},
		{name: "pattern without branch", extra: "[staging]\nlocation = staging.example.com\n", err: "has no {branch}"},
		{name: "pattern not a host", extra: "[staging]\nlocation = {branch}.exa mple.com\n", err: "staging location"},
		{name: "pattern with scheme", extra: "[staging]\nlocation = https://{branch}.example.com\n", err: "starts with https://"},
		{name: "bad glob", extra: "[staging]\nbranches = feat[ure\n", err: "is not a branch name or glob"},
		{name: "shell in glob", extra: "[staging]\nbranches = $(rm -rf)\n", err: "is not a branch name or glob"},
		{name: "seed from a glob", extra: "[staging]\nseed_from = ma*\n", err: "is not a branch name"},
		{name: "bad branch section", extra: "[branch:..]\nlocation = a.example.com\n", err: "does not name a branch"},
		{name: "bad branch location", extra: "[branch:beta]\nlocation = -beta.example.com\n", err: "[branch:beta] location"},
		{name: "unknown staging key", extra: "[staging]\nhost = x\n", warning: "[staging] has no key host"},
		{name: "unknown section", extra: "[development]\nx = 1\n", warning: "section [development] is ignored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, warnings, err := Parse("app.ini", []byte(minimalIni+tc.extra), "myapp", sampleTree)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Staging, tc.staging) || !reflect.DeepEqual(cfg.BranchLocations, tc.branch) {
				t.Fatalf("staging %+v %v, want %+v %v", cfg.Staging, cfg.BranchLocations, tc.staging, tc.branch)
			}
			if tc.warning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0].String(), tc.warning)) {
				t.Fatalf("warnings %v, want one with %q", warnings, tc.warning)
			}
		})
	}
}
