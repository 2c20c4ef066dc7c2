package cmdline

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest command Split accepts, in bytes. Real commands are a
// few hundred bytes; the cap keeps a hostile client from making us build huge
// argument lists.
const MaxLen = 64 << 10

// Split splits s into words following POSIX sh quoting rules without any expansion.
//
// Blank input yields an empty slice and a nil error; the caller decides what
// "no command" means.
func Split(s string) ([]string, error) {
	if err := checkInput(s); err != nil {
		return nil, err
	}

	words := []string{}
	var word strings.Builder
	// inWord is tracked separately from word.Len() because quotes alone
	// ('' or "") must still produce an empty word.
	inWord := false
	endWord := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}

	for i := 0; i < len(s); i++ {
		// Every byte with a special meaning is ASCII, so walking bytes is
		// safe: the bytes of a multi-byte UTF-8 character are all >= 0x80
		// and are copied through unchanged.
		switch c := s[i]; c {
		case ' ', '\t', '\n':
			endWord()
		case '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("%w at byte offset %d; escape it as \\\\ or quote it", ErrTrailingBackslash, i)
			}
			i++
			if s[i] == '\n' {
				// Line continuation: removed entirely, and it does not
				// start a word on its own.
				continue
			}
			word.WriteByte(s[i])
			inWord = true
		case '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("%w opened at byte offset %d; add the closing '", ErrUnterminatedSingleQuote, i)
			}
			word.WriteString(s[i+1 : i+1+end])
			inWord = true
			i += 1 + end
		case '"':
			next, err := readDoubleQuoted(s, i, &word)
			if err != nil {
				return nil, err
			}
			inWord = true
			i = next
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	endWord()
	return words, nil
}

// checkInput rejects inputs Split never tokenises: too long, NUL bytes (which
// cannot appear in an argv string) and invalid UTF-8.
func checkInput(s string) error {
	if len(s) > MaxLen {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLong, len(s), MaxLen)
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		return fmt.Errorf("%w at byte offset %d; commands cannot contain NUL", ErrNULByte, i)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w at byte offset %d; send the command as UTF-8", ErrInvalidUTF8, firstInvalidUTF8(s))
	}
	return nil
}

// readDoubleQuoted appends the contents of the double-quoted string whose
// opening quote is at s[open] to word, and returns the index of the closing
// quote.
func readDoubleQuoted(s string, open int, word *strings.Builder) (int, error) {
	for i := open + 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return i, nil
		case '\\':
			// Inside double quotes a backslash escapes only " \ $ ` and
			// newline; before anything else it is kept, so "a\nb" stays
			// the four characters a, \, n, b.
			if i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
				i++
				if s[i] != '\n' { // backslash-newline is removed
					word.WriteByte(s[i])
				}
				continue
			}
			word.WriteByte('\\')
		default:
			word.WriteByte(c)
		}
	}
	return 0, fmt.Errorf("%w opened at byte offset %d; add the closing \"", ErrUnterminatedDoubleQuote, open)
}

func firstInvalidUTF8(s string) int {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}
