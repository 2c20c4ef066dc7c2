package pthfix

import "strings"

// relPath returns target relative to dir, both clean slash paths relative to
// the app root ("" is the root): relPath("lib/python", "src/myapp") is
// "../../src/myapp". It is "." when they are the same directory. Unlike
// filepath.Rel it needs no working directory and cannot fail, since both
// paths are inside the same tree.
func relPath(dir, target string) string {
	from, to := splitPath(dir), splitPath(target)
	common := 0
	for common < len(from) && common < len(to) && from[common] == to[common] {
		common++
	}
	parts := make([]string, 0, len(from)-common+len(to)-common)
	for range from[common:] {
		parts = append(parts, "..")
	}
	parts = append(parts, to[common:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}
