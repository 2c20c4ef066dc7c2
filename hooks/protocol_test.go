package hooks

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

var (
	zero = strings.Repeat("0", 40)
	one  = strings.Repeat("1", 40)
)

func TestParseRefUpdate(t *testing.T) {
	for _, tc := range []struct {
		line   string
		ok     bool
		branch string
		tag    string
		del    bool
	}{
		{zero + " " + one + " refs/heads/main", true, "main", "", false},
		{one + " " + zero + " refs/heads/feature/x", true, "feature/x", "", true},
		{zero + " " + one + " refs/tags/v1", true, "", "v1", false},
		{strings.Repeat("a", 64) + " " + strings.Repeat("b", 64) + " refs/heads/main", true, "main", "", false},
		{zero + " " + one, false, "", "", false},
		{zero + " " + one + " main", false, "", "", false},
		{"xyz " + one + " refs/heads/main", false, "", "", false},
		{zero + " " + one + " refs/heads/a b", false, "", "", false},
		{zero + " " + one + " refs/heads/a\x00b", false, "", "", false},
		{"", false, "", "", false},
	} {
		u, err := ParseRefUpdate(tc.line)
		if (err == nil) != tc.ok {
			t.Errorf("ParseRefUpdate(%q) error = %v, want ok=%v", tc.line, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if u.Branch() != tc.branch || u.Tag() != tc.tag || u.IsDelete() != tc.del {
			t.Errorf("%q: branch %q tag %q delete %v", tc.line, u.Branch(), u.Tag(), u.IsDelete())
		}
	}
}

func TestForwardedEnv(t *testing.T) {
	for k, want := range map[string]bool{
		"GIT_OBJECT_DIRECTORY":             true,
		"GIT_ALTERNATE_OBJECT_DIRECTORIES": true,
		"GIT_QUARANTINE_PATH":              true,
		"GIT_PUSH_OPTION_COUNT":            true,
		"GIT_PUSH_OPTION_0":                true,
		"GIT_PUSH_OPTION_12":               true,
		"GIT_PUSH_OPTION_":                 false,
		"GIT_PUSH_OPTION_X":                false,
		"GIT_DIR":                          false,
		"LD_PRELOAD":                       false,
		"PATH":                             false,
		EnvToken:                           false,
	} {
		if got := ForwardedEnv(k); got != want {
			t.Errorf("ForwardedEnv(%q) = %v, want %v", k, got, want)
		}
	}
}

func TestRelayRefusesOutsideADaemonPush(t *testing.T) {
	var out bytes.Buffer
	code := Relay(context.Background(), "pre-receive", strings.NewReader(zero+" "+one+" refs/heads/main\n"), &out,
		func(string) string { return "" }, nil)
	if code == 0 || !strings.Contains(out.String(), "only for pushes through the gitreceive SSH server") {
		t.Fatalf("code %d, output %q", code, out.String())
	}
}

func TestRelayRejectsMalformedInput(t *testing.T) {
	var out bytes.Buffer
	env := map[string]string{EnvSocket: "/nonexistent", EnvToken: "t"}
	code := Relay(context.Background(), "pre-receive", strings.NewReader("garbage\n"), &out,
		func(k string) string { return env[k] }, nil)
	if code == 0 || !strings.Contains(out.String(), "malformed ref update") {
		t.Fatalf("code %d, output %q", code, out.String())
	}
}

func TestProgressPrefixesEveryLine(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out)
	p.Step("deploying %s", "main")
	p.Detail("a\nb")
	p.Error("bad")
	p.Done("live")
	want := "-----> deploying main\n       a\n       b\n !     bad\n=====> live\n"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 bytes", 1023: "1023 bytes", 48 << 10: "48 KB", 60 << 20: "60.0 MB", 3 << 30: "3.0 GiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
