package apps

import (
	"regexp"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/names"
)

func TestCheckBranchName(t *testing.T) {
	ok := []string{
		"main", "master", "feature-x", "feature/login", "user.name/topic", "fix_123", "v1.2.3", "A",
		"dependabot/npm_and_yarn/frontend/eslint-plugin-react-hooks-4.6.0",
		strings.Repeat("b", 193),       // "branch-" + 193 = 200
		strings.Repeat("a/", 48) + "a", // 48 slashes, each %2F: 7 + 97 + 96 = 200
	}
	for _, b := range ok {
		if err := names.CheckBranch(b); err != nil {
			t.Errorf("names.CheckBranch(%q) = %v, want nil", b, err)
		}
	}
	for _, tc := range []struct{ branch, want string }{
		{"x;id", `branch "x;id" cannot be deployed`},
		{"$(id)", `"$(id)" cannot be deployed`},
		{"a`id`", "cannot be deployed"},
		{"a|b", "cannot be deployed"},
		{"x$(touch${IFS}/tmp/pwned)", "cannot be deployed"},
		{"a'b", "cannot be deployed"},
		{`a"b`, "cannot be deployed"},
		{"a&b", "cannot be deployed"},
		{"a{b}", "cannot be deployed"},
		{"m\u0430in", `"m\u0430in" cannot be deployed`}, // Cyrillic а: shown escaped
		{"ünïcode", `"\u00fcn\u00efcode"`},
		{"a..b", `branch "a..b" is not a valid git branch name`},
		{"a//b", "not a valid git branch name"},
		{"a/", "not a valid git branch name"},
		{"a.", "not a valid git branch name"},
		{"a/.hidden", "not a valid git branch name"},
		{"x.lock", "not a valid git branch name"},
		{"x.lock/y", "not a valid git branch name"},
		{"-rf", "starting with a letter or digit"},
		{".hidden", "starting with a letter or digit"},
		{"_x", "starting with a letter or digit"},
		{"a\x01b", `"a\x01b"`},
		{"", "cannot be deployed"},
		{strings.Repeat("b", 194), "is too long to deploy: it is 194 characters and its instance name would be 201"},
		{strings.Repeat("a/", 60) + "a", "is too long to deploy"},
		{strings.Repeat("b", 250), `"` + strings.Repeat("b", 60) + `"...`},
	} {
		err := names.CheckBranch(tc.branch)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("names.CheckBranch(%q) = %v, want an error containing %q", tc.branch, err, tc.want)
		}
	}
}

func TestShowName(t *testing.T) {
	for in, want := range map[string]string{
		"myapp":                       `"myapp"`,
		"my\u0430pp":                  `"my\u0430pp"`,
		"a\x00b":                      `"a\x00b"`,
		strings.Repeat("x", 61):       `"` + strings.Repeat("x", 60) + `"...`,
		strings.Repeat("x", 59) + "é": `"` + strings.Repeat("x", 59) + `"...`, // not cut inside the rune
	} {
		if got := names.Show(in); got != want {
			t.Errorf("names.Show(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestAppFromRepoArgShowsLookAlikes(t *testing.T) {
	_, err := AppFromRepoArg("/my\u0430pp.git")
	if err == nil || !strings.Contains(err.Error(), `"/my\u0430pp.git"`) {
		t.Fatalf("appFromRepoArg with a Cyrillic а: %v", err)
	}
}

func TestCheckRefUpdates(t *testing.T) {
	const zero, one = "0000000000000000000000000000000000000000", "1111111111111111111111111111111111111111"
	create := func(ref string) hooks.RefUpdate { return hooks.RefUpdate{Old: zero, New: one, Ref: ref} }
	del := func(ref string) hooks.RefUpdate { return hooks.RefUpdate{Old: one, New: zero, Ref: ref} }
	existing := []string{"refs/heads/main", "refs/heads/feature/ok", "refs/heads/topic", "refs/tags/v1"}
	for _, tc := range []struct {
		name    string
		updates []hooks.RefUpdate
		want    string // "" for no error
	}{
		{"new branch", []hooks.RefUpdate{create("refs/heads/feature-x")}, ""},
		{"update main", []hooks.RefUpdate{{Old: one, New: one, Ref: "refs/heads/main"}}, ""},
		{"sibling of a nested branch", []hooks.RefUpdate{create("refs/heads/feature/new")}, ""},
		{"tag beside a tag", []hooks.RefUpdate{create("refs/tags/v1/x")}, ""}, // deploys nothing; git's to refuse
		{"delete a badly named branch", []hooks.RefUpdate{del("refs/heads/x;id")}, ""},
		{"parent of an existing branch", []hooks.RefUpdate{create("refs/heads/feature")}, `branch "feature" cannot be created while "feature/ok" exists`},
		{"child of an existing branch", []hooks.RefUpdate{create("refs/heads/topic/x")}, `while "topic" exists`},
		{"child of a branch deleted in the same push", []hooks.RefUpdate{del("refs/heads/topic"), create("refs/heads/topic/x")}, `while "topic" exists`},
		{"parent and child in one push", []hooks.RefUpdate{create("refs/heads/a/b"), create("refs/heads/a")}, `branch "a" cannot be created while "a/b" exists`},
		{"same branch twice", []hooks.RefUpdate{create("refs/heads/x"), create("refs/heads/x")}, `"x" is updated twice in one push`},
		{"bad name among good ones", []hooks.RefUpdate{create("refs/heads/ok"), create("refs/heads/a..b")}, `branch "a..b" is not a valid git branch name`},
	} {
		err := checkRefUpdates(tc.updates, existing)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// agentInstanceName is nodes/agent's rule for instance names.
var agentInstanceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._%-]{0,199}$`)

// FuzzCheckBranchName: a branch the receiver lets through names an
// instance every node accepts, never holds a path trick, and shows as one
// printable ASCII line.
func FuzzCheckBranchName(f *testing.F) {
	for _, s := range []string{"main", "feature/login", "a..b", "x;id", "$(id)", "m\u0430in", "a//b", "x.lock", strings.Repeat("a/", 60)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, branch string) {
		if shown := names.Show(branch); strings.ContainsFunc(shown, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			t.Fatalf("names.Show(%q) = %q is not printable ASCII", branch, shown)
		}
		if names.CheckBranch(branch) != nil {
			return
		}
		if inst := names.Instance(branch); !agentInstanceName.MatchString(inst) {
			t.Fatalf("branch %q accepted but its instance %q is refused by the agent", branch, inst)
		}
		if strings.Contains(branch, "..") || strings.HasPrefix(branch, "/") || strings.Contains(branch, "//") {
			t.Fatalf("branch %q accepted with a path trick", branch)
		}
	})
}
