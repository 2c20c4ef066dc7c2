package nodes

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestLineWriterEscapes: every line a node prints reaches the receiver's
// callers whole and safe for a terminal, however it was cut into writes.
func TestLineWriterEscapes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		raw    bool
		writes []string
		want   []string
	}{
		{"plain lines", false, []string{"a\nb\n"}, []string{"a", "b"}},
		{"ESC split between writes", false, []string{"x\x1b", "[2J\n"}, []string{`x\x1b[2J`}},
		{"UTF-8 split between writes", false, []string{"caf\xc3", "\xa9\n"}, []string{"café"}},
		{"CR and BEL", false, []string{"50%\r100%\a\n"}, []string{`50%\x0d100%\x07`}},
		{"last line without newline", false, []string{"one\ntwo\x9b"}, []string{"one", `two\x9b`}},
		{"a line longer than maxRelayLine comes in pieces", false, []string{strings.Repeat("a", maxRelayLine+10) + "\n"},
			[]string{strings.Repeat("a", maxRelayLine), strings.Repeat("a", 10)}},
		{"raw: a terminal session's lines as they are", true, []string{"\x1b[2J", "x\r\n"}, []string{"\x1b[2Jx\r"}},
		{"a long line is cut before a character, not in it", false, []string{strings.Repeat("a", maxRelayLine-1) + "é", "z\n"},
			[]string{strings.Repeat("a", maxRelayLine-1), "éz"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			w := NewLineWriter(func(l string) { got = append(got, l) }, tc.raw)
			for _, s := range tc.writes {
				w.Write([]byte(s))
			}
			w.Flush()
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", short(got), short(tc.want))
			}
		})
	}
}

// short shows long lines by their length and ends.
func short(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if out[i] = l; len(l) > 40 {
			out[i] = fmt.Sprintf("%s...(%d bytes)...%s", l[:10], len(l), l[len(l)-10:])
		}
	}
	return out
}
