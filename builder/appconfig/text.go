package appconfig

import (
	"bytes"
	"unicode/utf8"
)

// MaxFileSize is the largest app.ini Parse reads. Real ones are a few
// hundred bytes; anything near this is a mistake (or an attack).
const MaxFileSize = 1 << 20

// textProblem says why data cannot be app.ini text, and on which line, or
// returns "" when data is plain UTF-8 text.
func textProblem(data []byte) (line int, problem string) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return lineOf(data, i), "contains a NUL byte, so it is not a text file; save it as plain UTF-8 text"
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return lineOf(data, i), "is not valid UTF-8; save it as UTF-8 text (check your editor's encoding setting)"
		}
		i += size
	}
	return 0, ""
}

// lineOf is the 1-based line holding data[offset].
func lineOf(data []byte, offset int) int {
	return bytes.Count(data[:offset], []byte("\n")) + 1
}
