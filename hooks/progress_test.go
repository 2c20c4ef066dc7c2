package hooks

import (
	"bytes"
	"testing"
)

// TestProgressEscapesLines: whatever a message quotes (a node's line, an
// app's log in an error), each line the pusher sees starts with the
// prefix and holds no control sequence.
func TestProgressEscapesLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		say  func(p *Progress)
		want string
	}{
		{"plain detail", func(p *Progress) { p.Detail("%-8s %s", "web1", "ready") }, "       web1     ready\n"},
		{"ESC sequence in a detail", func(p *Progress) { p.Detail("%s", "\x1b[2Jcleared") }, "       \\x1b[2Jcleared\n"},
		{"CR cannot overwrite the prefix", func(p *Progress) { p.Detail("%s", "ok\r=====> forged is live") },
			"       ok\\x0d=====> forged is live\n"},
		{"each line of an error gets the prefix", func(p *Progress) { p.Error("%s", "failed:\n  \x07bell\n") },
			" !     failed:\n !       \\x07bell\n"},
		{"invalid UTF-8 in a step", func(p *Progress) { p.Step("%s", "a\xffb") }, "-----> a\\xffb\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			tc.say(NewProgress(&b))
			if b.String() != tc.want {
				t.Errorf("got %q, want %q", b.String(), tc.want)
			}
		})
	}
}
