package pthfix

import (
	"path"
	"strings"
	"unicode"
)

// entry is a line split into the path Python would read and the whitespace
// around it, which a rewrite keeps in place.
type entry struct {
	lead, path, trail string
}

// readEntry returns the path Python reads from a line of a .pth file (or
// pip from the first line of an .egg-link), and false for a line it reads no
// path from: blank lines, and in .pth files comments and import lines.
func readEntry(text string, eggLink bool) (entry, bool) {
	if isBlank(text) {
		return entry{}, false
	}
	if eggLink {
		return splitEntry(text, true), true
	}
	if strings.HasPrefix(text, "#") || isPythonCode(text) {
		return entry{}, false
	}
	return splitEntry(text, false), true
}

// splitEntry separates surrounding whitespace from a path. Python's site.py
// strips only the right side of a .pth line (a leading space makes the entry
// relative), while pip strips both sides of an .egg-link's first line.
func splitEntry(text string, trimLeft bool) entry {
	p := strings.TrimRightFunc(text, isPythonSpace)
	e := entry{trail: text[len(p):]}
	if trimLeft {
		e.path = strings.TrimLeftFunc(p, isPythonSpace)
		e.lead = p[:len(p)-len(e.path)]
	} else {
		e.path = p
	}
	return e
}

// isPythonSpace is str.isspace of Python, which site.py uses: Go's
// unicode.IsSpace plus the ASCII separators U+001C to U+001F.
func isPythonSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// isPythonCode reports whether site.py executes a .pth line instead of
// adding it to sys.path.
func isPythonCode(text string) bool {
	return strings.HasPrefix(text, "import ") || strings.HasPrefix(text, "import\t")
}

// isBlank reports whether site.py skips the line as empty.
func isBlank(text string) bool {
	return strings.TrimFunc(text, isPythonSpace) == ""
}

// escapesRoot reports whether a relative entry, resolved against dir the way
// Python does (lexically), leaves the app: such a path would point outside
// the release on the servers.
func escapesRoot(dir, rel string) bool {
	joined := path.Join(dir, rel)
	return joined == ".." || strings.HasPrefix(joined, "../")
}

func hasDotDot(comps []string) bool {
	for _, c := range comps {
		if c == ".." {
			return true
		}
	}
	return false
}
