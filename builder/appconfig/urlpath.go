package appconfig

import (
	"strings"
	"unicode"
)

// urlPathProblem says why p cannot be a path on the app's own site (what
// update_fetch and health_check request), or returns "".
func urlPathProblem(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "does not start with /"
	case strings.HasPrefix(p, "//"):
		return "starts with //, which HTTP clients read as another host"
	case strings.IndexFunc(p, unicode.IsSpace) >= 0:
		return "contains a space"
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return "contains a control character"
	}
	return ""
}
