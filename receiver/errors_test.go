package receiver

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/rs/zerolog"
)

func TestExitCode(t *testing.T) {
	cause := errors.New("open /var/lib/gitreceive/nodes.ini: permission denied")
	tests := []struct {
		name       string
		err        error
		wantCode   int
		wantStderr string // a regexp; empty: nothing printed
		wantLogged bool   // the cause is in the log under the request id shown
	}{
		{"success", nil, 0, "", false},
		{"exit status passed through", apps.ExitStatus(130), 130, "", false},
		{"wrapped exit status", fmt.Errorf("run: %w", apps.ExitStatus(3)), 3, "", false},
		{"user error", apps.Failf("usage: %s", "version"), 1, `^gitreceive: usage: version\n$`, false},
		{"user error is escaped", apps.Failf("node said %s", "\x1b[2J"), 1, `^gitreceive: node said \\x1b\[2J\n$`, false},
		{"internal error", apps.Internal(cause, "cannot read the node inventory"),
			1, `^gitreceive: cannot read the node inventory; tell the operator \(request ([0-9a-f]{8})\)\n$`, true},
		{"bare error is internal", cause, 1, `^gitreceive: the command failed; tell the operator \(request ([0-9a-f]{8})\)\n$`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr, logs bytes.Buffer
			code := exitCode(zerolog.New(&logs), &stderr, tt.err)
			if code != tt.wantCode {
				t.Errorf("code = %d, want %d", code, tt.wantCode)
			}
			if tt.wantStderr == "" {
				if stderr.Len() != 0 || logs.Len() != 0 {
					t.Fatalf("printed %q, logged %q; want nothing", stderr.String(), logs.String())
				}
				return
			}
			m := regexp.MustCompile(tt.wantStderr).FindStringSubmatch(stderr.String())
			if m == nil {
				t.Fatalf("stderr %q does not match %s", stderr.String(), tt.wantStderr)
			}
			if strings.Contains(stderr.String(), "permission denied") {
				t.Errorf("the cause reached the user: %q", stderr.String())
			}
			if !tt.wantLogged {
				if logs.Len() != 0 {
					t.Errorf("a user error was logged: %q", logs.String())
				}
				return
			}
			for _, want := range []string{`"request":"` + m[1] + `"`, `"error":"` + cause.Error() + `"`} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log %q lacks %s", logs.String(), want)
				}
			}
		})
	}
}
