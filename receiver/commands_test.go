package receiver

import (
	"slices"
	"strings"
	"testing"
)

// The dispatcher finds a command's APP[@BRANCH] through the table; a
// malformed command line gets the sentence the command gave before.
func TestCommandTargets(t *testing.T) {
	tests := []struct {
		line    string
		want    string // the target argument
		wantErr string // the user's sentence
	}{
		{"releases blog@main --json", "blog@main", ""},
		{"releases --json blog", "blog", ""},
		{"releases", "", "usage: " + releasesUsage},
		{"releases a b", "", "usage: " + releasesUsage},
		{"activate blog v3", "blog", ""},
		{"activate blog", "", "usage: " + activateUsage},
		{"logs -n 5 -f --node web1 blog@dev", "blog@dev", ""},
		{"logs -n lots blog", "", "-n takes a number of lines from 0 to 100000"},
		{"logs --tail blog", "", `unknown option "--tail"; usage: ` + logsUsage},
		{"logs", "", "usage: " + logsUsage},
		{"logs blog -n", "", "option -n needs a value; usage: " + logsUsage},
		{"logs blog -- -f", "", "usage: " + logsUsage},
		{"logs -- -f", "-f", ""},
		{"releases --json=maybe blog", "", `invalid boolean value "maybe" for -json: parse error; usage: ` + releasesUsage},
		{"run --env A=1 blog manage.py migrate", "blog", ""},
		{"run --node web1 blog x", "", "--node goes after APP; usage: " + runUsage},
		{"run", "", "usage: " + runUsage},
		{"destroy blog --confirm blog --with-data", "blog", ""},
		{"destroy --with-data blog@dev --confirm blog", "blog@dev", ""},
		{"destroy blog", "", "usage: " + destroyUsage},
		{"config blog", "blog", ""},
		{"config blog x", "", "usage: " + configUsage},
		{"config:set blog A=1 B=2", "blog", ""},
		{"config:set blog", "", "usage: " + configSetUsage},
		{"config:unset blog A", "blog", ""},
		{"config:unset blog 1A", "", `"1A" is not a config key; usage: ` + configUnsetUsage},
		{"disable blog", "blog", ""},
		{"enable", "", "usage: " + enableUsage},
		{"backup blog@main", "blog@main", ""},
		{"restore blog extra", "", "usage: " + restoreUsage},
		{"clear blog postgresql --confirm blog", "blog", ""},
		{"clear blog postgresql blog", "", "usage: " + clearUsage},
	}
	for _, tt := range tests {
		args := strings.Fields(tt.line)
		cmd := commands[args[0]]
		if cmd.target == nil {
			t.Fatalf("%s has no target in the command table", args[0])
		}
		got, err := targetOf(cmd, args)
		switch {
		case tt.wantErr != "":
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%q: error %v, want %q", tt.line, err, tt.wantErr)
			}
		case err != nil || got != tt.want:
			t.Errorf("%q: got %q, %v; want %q", tt.line, got, err, tt.want)
		}
	}
}

// Every command that deletes data asks for --confirm, and every command
// that changes an instance runs under its app's lock.
func TestCommandTableDeclaresConfirmAndLock(t *testing.T) {
	for name, cmd := range commands {
		wantLock := map[string]bool{"activate": true, "destroy": true, "config:set": true, "config:unset": true, "restore": true, "clear": true}[name]
		wantConfirm := name == "destroy" || name == "clear"
		if (cmd.lock != nil) != wantLock || (cmd.confirm != nil) != wantConfirm {
			t.Errorf("%s: lock %v, confirm %v; want %v, %v", name, cmd.lock != nil, cmd.confirm != nil, wantLock, wantConfirm)
		}
		if (cmd.lock != nil || cmd.confirm != nil) && cmd.target == nil {
			t.Errorf("%s locks or confirms but has no target", name)
		}
	}
	if v, undone := commands["destroy"].confirm(mustArgv(t, "destroy --with-data blog --confirm shop")); v != "shop" || undone != "destroyed" {
		t.Errorf("destroy's confirmation: %q, %q", v, undone)
	}
	if what := commands["clear"].lock(mustArgv(t, "clear blog redis --confirm blog")); what != "clear redis" {
		t.Errorf("clear's lock says %q", what)
	}
}

// The target funcs read a client's command line: whatever it is, they
// return an error or one of its words, and never panic.
func FuzzCommandTargets(f *testing.F) {
	for _, seed := range []string{"releases blog --json", "logs -n 5 blog", "run --env A=1 blog x", "destroy blog --confirm blog --with-data", "clear blog redis --confirm blog", "config:set blog A=1", "logs -n"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Fields(line)
		for name, cmd := range commands {
			if cmd.target == nil {
				continue
			}
			words := append([]string{name}, args...)
			a, err := parseArgv(cmd, words)
			if err != nil {
				continue
			}
			got, err := cmd.target(a)
			if err == nil && !slices.Contains(words[1:], got) {
				t.Fatalf("%s %q: target %q is not one of its arguments", name, args, got)
			}
			if err == nil && cmd.confirm != nil {
				cmd.confirm(a)
			}
			if err == nil && cmd.lock != nil {
				cmd.lock(a)
			}
		}
	})
}

// targetOf is what the dispatcher does with a command line: its options
// parsed, then its target found.
func targetOf(cmd command, args []string) (string, error) {
	a, err := parseArgv(cmd, args)
	if err != nil {
		return "", err
	}
	return cmd.target(a)
}

func mustArgv(t *testing.T, line string) argv {
	t.Helper()
	args := strings.Fields(line)
	a, err := parseArgv(commands[args[0]], args)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
