package cmdline

import "strings"

// Quote returns word quoted so that Split reads it back as exactly one word
// equal to word. Words made only of characters that are never special are
// returned bare, to keep logged commands readable.
func Quote(word string) string {
	if word == "" {
		return "''"
	}
	if isSafeBare(word) {
		return word
	}
	// Inside single quotes nothing is special except the closing quote, so
	// a quote is written as: close, escaped quote, reopen.
	return "'" + strings.ReplaceAll(word, "'", `'\''`) + "'"
}

func isSafeBare(word string) bool {
	for i := 0; i < len(word); i++ {
		c := word[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("@%+=:,./_-", c) >= 0:
		default:
			return false
		}
	}
	return true
}
