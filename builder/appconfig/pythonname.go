package appconfig

import "slices"

// pythonKeywords cannot name a Python object, though they look like names.
var pythonKeywords = []string{
	"False", "None", "True", "and", "as", "assert", "async", "await", "break",
	"class", "continue", "def", "del", "elif", "else", "except", "finally",
	"for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
	"not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
}

// pythonNameProblem says why s cannot name a module-level Python object, or
// returns "". Only ASCII names are accepted: WSGI objects are looked up by a
// server that may not normalise Unicode names the way Python does.
func pythonNameProblem(s string) string {
	if s == "" {
		return "is empty"
	}
	for i, r := range s {
		letter := r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
		digit := '0' <= r && r <= '9'
		if !letter && !(digit && i > 0) {
			return "is not a Python identifier (letters, digits and _, not starting with a digit)"
		}
	}
	if slices.Contains(pythonKeywords, s) {
		return "is a Python keyword, not a name"
	}
	return ""
}
