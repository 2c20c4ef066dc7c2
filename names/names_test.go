package names

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		is   func(string) bool
		in   string
		want bool
	}{
		{"app", IsApp, "blog", true},
		{"app upper", IsApp, "Blog", false},
		{"app digit first", IsApp, "1blog", false},
		{"app shell", IsApp, "blog;rm", false},
		{"app 63", IsApp, "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc", true},
		{"node", IsNode, "node-1", true},
		{"instance", IsInstance, "branch-feature%2Fx", true},
		{"instance dotdot first", IsInstance, "..", false},
		{"glob", IsBranchGlob, "feature-*", true},
		{"glob bracket", IsBranchGlob, "feat[ure", false},
		{"host", IsHost, "app.example.test", true},
		{"host upper", IsHost, "App.example.test", false},
		{"host empty label", IsHost, "a..b", false},
		{"host dash end", IsHost, "a-.b", false},
		{"package", IsDebianPackage, "python3-django", true},
		{"package option", IsDebianPackage, "-oAPT::x", false},
	} {
		if got := tc.is(tc.in); got != tc.want {
			t.Errorf("%s: %q = %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestCheckBranch(t *testing.T) {
	for _, tc := range []struct {
		branch string
		ok     bool
	}{
		{"main", true}, {"feature/login", true}, {"$(touch x)", false}, {"a..b", false},
		{"x.lock", false}, {"a/.b", false}, {"a/", false}, {"a.", false}, {"мain", false},
	} {
		if err := CheckBranch(tc.branch); (err == nil) != tc.ok {
			t.Errorf("CheckBranch(%q) = %v, want ok=%v", tc.branch, err, tc.ok)
		}
	}
	if Instance("main") != "production" || Instance("feature/x") != "branch-feature%2Fx" {
		t.Error("Instance")
	}
}

func TestCheckEnvAssignment(t *testing.T) {
	for _, tc := range []struct {
		kv, err string
	}{
		{"K=V", ""}, {"DJANGO_SUPERUSER_PASSWORD=p w=x", ""}, {"_x=", ""},
		{"K", "has no '='"}, {"1K=v", "not a variable name"}, {"K-1=v", "not a variable name"},
		{"K=a\x00b", "NUL"}, {"$(id)=x", "not a variable name"},
	} {
		err := CheckEnvAssignment(tc.kv)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: %v, want %q", tc.kv, err, tc.err)
		}
	}
	if err := CheckEnvAssignment("K-1=secret-value"); err == nil || strings.Contains(err.Error(), "secret-value") {
		t.Errorf("the error shows the value: %v", err)
	}
}
