package pthfix

import "bytes"

// line is one line of a file as Python's universal-newline reader sees it:
// "\n", "\r\n" and a lone "\r" all end a line. Keeping the ending apart lets
// Fix write every line back with the ending it had.
type line struct {
	text []byte // without the ending
	end  []byte // "\n", "\r\n", "\r", or empty for a last line without one
}

// splitLines cuts b into lines; joining text+end of all of them gives b back.
func splitLines(b []byte) []line {
	var lines []line
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			lines = append(lines, line{text: b})
			break
		}
		n := 1
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			n = 2
		}
		lines = append(lines, line{text: b[:i], end: b[i : i+n]})
		b = b[i+n:]
	}
	return lines
}

// utf8BOM is kept in front of the first line and not read as part of it:
// Python 3.13+ decodes .pth files as utf-8-sig, and an editor that adds it
// should not make the first entry look relative.
var utf8BOM = []byte("\xef\xbb\xbf")
