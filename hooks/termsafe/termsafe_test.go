package termsafe

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"plain ASCII", "hello, world", "hello, world"},
		{"tab and newline pass", "a\tb\nc\n", "a\tb\nc\n"},
		{"accents, CJK, emoji pass", "café 東京 🚀 ½", "café 東京 🚀 ½"},
		{"encoded U+FFFD passes", "a\uFFFDb", "a\uFFFDb"},
		{"backslash passes", `C:\x1b`, `C:\x1b`},
		{"ESC sequence: clear screen", "\x1b[2J\x1b[H", `\x1b[2J\x1b[H`},
		{"OSC window title with BEL", "\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},
		{"CR overwrite", "ok\rremote: forged", `ok\x0dremote: forged`},
		{"CRLF", "line\r\n", "line\\x0d\n"},
		{"backspace, NUL, DEL", "a\bb\x00c\x7f", `a\x08b\x00c\x7f`},
		{"vertical tab, form feed", "\v\f", `\x0b\x0c`},
		{"C1 CSI as UTF-8", "\u009b31m", `\u009b31m`},
		{"C1 NEL and OSC as UTF-8", "\u0085\u009d", `\u0085\u009d`},
		{"C1 CSI as a raw byte", "\x9b31m", `\x9b31m`},
		{"invalid bytes", "bad\xff\xfename", `bad\xff\xfename`},
		{"truncated sequence at the end", "abc\xe2\x82", `abc\xe2\x82`},
		{"truncated sequence in the middle", "\xe2\x82x", `\xe2\x82x`},
		{"overlong encoding of '/'", "\xc0\xaf", `\xc0\xaf`},
		{"UTF-16 surrogate", "\xed\xa0\x80", `\xed\xa0\x80`},
		{"right-to-left override", "a\u202eevil\u202cb", `a\u202eevil\u202cb`},
		{"isolates and marks", "\u2066x\u2069\u200e\u200f\u061c", `\u2066x\u2069\u200e\u200f\u061c`},
		{"zero-width joiner in an emoji passes", "👩\u200d💻", "👩\u200d💻"},
		{"already escaped text is unchanged", `\x1b[2J\u009b`, `\x1b[2J\u009b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := String(tc.in); got != tc.want {
				t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestWriterSplits writes inputs cut at every point (and byte by byte):
// the result must be String's, so a sequence split between reads is
// escaped and a character split between them is kept whole.
func TestWriterSplits(t *testing.T) {
	for _, in := range []string{
		"\x1b[2Jclear",
		"ok\rforged",
		"café 東京 🚀",
		"a\u009bb\u202ec",
		"bad\xff\xfe tail \xe2\x82",
		"\xe2\x82\xe2\x82\xac",
		"🚀\x1b🚀",
	} {
		want := String(in)
		for cut := 0; cut <= len(in); cut++ {
			var got bytes.Buffer
			w := NewWriter(&got)
			for _, part := range []string{in[:cut], in[cut:]} {
				if n, err := w.Write([]byte(part)); n != len(part) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", part, n, err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if got.String() != want {
				t.Errorf("%q cut at %d: %q, want %q", in, cut, got.String(), want)
			}
		}
		var got bytes.Buffer
		w := NewWriter(&got)
		for i := 0; i < len(in); i++ {
			w.Write([]byte{in[i]})
		}
		w.Flush()
		if got.String() != want {
			t.Errorf("%q byte by byte: %q, want %q", in, got.String(), want)
		}
	}
}

// TestWriterDoesNotWait: what can be shown is written by the Write that
// brought it, so `logs -f` and a running script's output are not held
// back; only a cut UTF-8 character waits for its rest.
func TestWriterDoesNotWait(t *testing.T) {
	for _, tc := range []struct {
		name, write, now string
	}{
		{"a whole line", "line\n", "line\n"},
		{"a line without its newline", "prompt> ", "prompt> "},
		{"a lone ESC", "\x1b", `\x1b`},
		{"the first byte of é", "x\xc3", "x"},
		{"three bytes of a rocket", "\xf0\x9f\x9a", ""},
		{"an invalid byte", "\xff", `\xff`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got bytes.Buffer
			NewWriter(&got).Write([]byte(tc.write))
			if got.String() != tc.now {
				t.Errorf("after Write(%q): %q, want %q", tc.write, got.String(), tc.now)
			}
		})
	}
}

// TestWriterFlushWhileWriting: a run cancelled while its output is still
// copied flushes from another goroutine; run with -race.
func TestWriterFlushWhileWriting(t *testing.T) {
	var got lockedBuffer
	w := NewWriter(&got)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			w.Write([]byte("caf\xc3"))
			w.Write([]byte("\xa9\x1b\n"))
		}
	}()
	for i := 0; i < 200; i++ {
		w.Flush()
	}
	<-done
	w.Flush()
	checkSafe(t, "", got.String())
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("pusher gone") }

func TestWriterPassesErrors(t *testing.T) {
	w := NewWriter(failingWriter{})
	if n, err := w.Write([]byte("x")); n != 0 || err == nil {
		t.Errorf("Write = %d, %v; want 0 and the underlying error", n, err)
	}
	if _, err := w.Write([]byte("\xe2")); err != nil {
		t.Errorf("a held byte wrote nothing, yet: %v", err)
	}
	if err := w.Flush(); err == nil {
		t.Error("Flush hid the underlying error")
	}
}

// checkSafe fails unless out holds nothing a terminal would obey: no
// control character but tab and newline, no bidi control, valid UTF-8.
func checkSafe(t *testing.T, in, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("%q -> %q: not valid UTF-8", in, out)
	}
	for _, r := range out {
		if (r < 0x20 && r != '\t' && r != '\n') || (r >= 0x7f && r <= 0x9f) ||
			r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			t.Fatalf("%q -> %q: holds %U", in, out, r)
		}
	}
}

func FuzzString(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[2J", "a\rb", "\a", "\u009b", "\x9b", "\xe2\x82", "café 🚀", "\u202e", "\t\n", `\x1b`} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, in string, cut uint8) {
		out := String(in)
		checkSafe(t, in, out)
		// Text that is already safe passes unchanged.
		safeIn := utf8.ValidString(in)
		for _, r := range in {
			safeIn = safeIn && safe(r)
		}
		if safeIn && out != in {
			t.Fatalf("safe text %q was changed to %q", in, out)
		}
		if !safeIn && out == in {
			t.Fatalf("unsafe text %q passed unchanged", in)
		}
		// Escaping twice changes nothing.
		if again := String(out); again != out {
			t.Fatalf("%q escaped again: %q -> %q", in, out, again)
		}
		// The Writer gives the same text whatever the cuts.
		var got bytes.Buffer
		w := NewWriter(&got)
		for rest, step := in, int(cut)%7+1; rest != ""; {
			n := min(step, len(rest))
			w.Write([]byte(rest[:n]))
			rest = rest[n:]
		}
		w.Flush()
		if got.String() != out {
			t.Fatalf("%q written in pieces of %d: %q, String gives %q", in, int(cut)%7+1, got.String(), out)
		}
		if strings.Count(out, "\n") != strings.Count(in, "\n") {
			t.Fatalf("%q -> %q: the lines changed", in, out)
		}
	})
}
