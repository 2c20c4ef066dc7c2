// Package termsafe makes text from apps safe to show on a person's
// terminal. An app's output (its log, an update_fetch script, a `run`
// script) reaches deployers and operators as `remote:` lines, `logs` and
// `run` output; a raw ESC, CR or BEL in it could clear or retitle their
// terminal, overwrite a line with a forged `remote:` line, or hide text.
// Everything here applies one rule (safe) and one way of showing what it
// refuses (appendEscaped):
//
//   - tab, newline and every printable character pass unchanged, so valid
//     UTF-8 text (accents, CJK, emoji) looks as the app meant it;
//   - other C0 controls and DEL become \xHH (ESC is \x1b, CR \x0d);
//   - C1 controls (U+0080-U+009F, which some terminals obey as CSI, OSC...)
//     and the bidirectional formatting controls (which make a terminal
//     show characters in another order than they were sent, as in
//     "Trojan Source") become \uHHHH;
//   - a byte that is not part of valid UTF-8 becomes \xHH.
//
// The output therefore holds no control character except tab and newline,
// and is valid UTF-8. A backslash passes as it is: the point is that
// nothing reaches the terminal as a command, not that the bytes can be
// recovered, and escaping again changes nothing.
package termsafe

import (
	"io"
	"sync"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// safe says whether r may reach a terminal as it is (r is a decoded rune;
// invalid bytes are never safe).
func safe(r rune) bool {
	switch {
	case r == '\t' || r == '\n':
		return true
	case r < 0x20 || r == 0x7f: // C0 controls, DEL
		return false
	case r >= 0x80 && r <= 0x9f: // C1 controls
		return false
	case r == 0x061c, r == 0x200e, r == 0x200f, // ALM, LRM, RLM
		r >= 0x202a && r <= 0x202e, // LRE, RLE, PDF, LRO, RLO
		r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return false
	}
	return true
}

// appendEscaped appends p to dst with what safe refuses escaped, and says
// how many bytes at the end of p it left out: the start of a UTF-8
// sequence that the next read may complete (at most 3 bytes, none when
// final). This is the one place the escaping happens; String and Writer
// only decide what is final.
func appendEscaped(dst, p []byte, final bool) ([]byte, int) {
	for i := 0; i < len(p); {
		b := p[i]
		if b < utf8.RuneSelf {
			if safe(rune(b)) {
				dst = append(dst, b)
			} else {
				dst = append(dst, '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && size <= 1 && !final && !utf8.FullRune(p[i:]):
			// A sequence cut by the end of this read, not (yet) invalid.
			return dst, len(p) - i
		case r == utf8.RuneError && size <= 1:
			dst = append(dst, '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf])
			i++
		case safe(r):
			dst = append(dst, p[i:i+size]...)
			i += size
		default:
			dst = append(dst, '\\', 'u',
				hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
			i += size
		}
	}
	return dst, 0
}

// String returns s with what may not reach a terminal escaped; s itself
// when nothing needs to be.
func String(s string) string {
	for i, r := range s {
		if !safe(r) || (r == utf8.RuneError && !validAt(s, i)) {
			out, _ := appendEscaped(make([]byte, 0, len(s)+16), []byte(s), true)
			return string(out)
		}
	}
	return s
}

// validAt says whether the U+FFFD that ranging over s found at i was in s
// (encoded), rather than standing for an invalid byte.
func validAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 3
}

// Writer escapes what is written to it (as String does) on its way to an
// underlying writer, for output that arrives in pieces of any size: an
// escape sequence split between two writes is escaped all the same, and
// a UTF-8 character split between them is held (at most 3 bytes) until
// the rest arrives, not escaped as invalid. Call Flush at the end of the
// stream for what was held. Write and Flush may be called from different
// goroutines (a stream cancelled while its copier still writes).
type Writer struct {
	mu   sync.Mutex
	w    io.Writer
	held []byte // the start of a UTF-8 sequence cut by the last write
	out  []byte // reused between writes
}

// NewWriter returns a Writer writing the escaped text to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write escapes p and writes it on at once, but for a cut UTF-8 sequence
// at its end. It reports all of p written unless the underlying writer
// failed.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	in := p
	if len(w.held) > 0 {
		in = append(w.held, p...)
	}
	out, rest := appendEscaped(w.out[:0], in, false)
	w.out = out
	w.held = append(w.held[:0:0], in[len(in)-rest:]...)
	if len(out) == 0 {
		return len(p), nil
	}
	if _, err := w.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what is still held, escaped: the stream ended in the
// middle of a UTF-8 sequence.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.held) == 0 {
		return nil
	}
	out, _ := appendEscaped(w.out[:0], w.held, true)
	w.out, w.held = out, nil
	_, err := w.w.Write(out)
	return err
}
