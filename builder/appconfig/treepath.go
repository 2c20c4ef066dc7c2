package appconfig

import (
	"errors"
	"strings"
	"unicode"
)

// cleanTreePath turns a path written in app.ini into the form Tree takes:
// relative, slash-separated, without "." or empty parts. It returns "" for
// the app root itself. Absolute paths and ".." are refused rather than
// resolved: app.ini may only name things inside the pushed tree.
func cleanTreePath(p string) (string, error) {
	p = strings.TrimSpace(p)
	switch {
	case p == "":
		return "", errors.New("is empty")
	case strings.HasPrefix(p, "/"):
		return "", errors.New("is an absolute path")
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return "", errors.New("contains a control character")
	}
	var parts []string
	for part := range strings.SplitSeq(p, "/") {
		switch part {
		case "", ".":
			continue
		case "..":
			return "", errors.New("has a .. component, which could reach outside the pushed tree")
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, "/"), nil
}

// treeFileProblem says why path (cleaned) is not a file in tree, or "".
func treeFileProblem(tree Tree, path string) string {
	switch {
	case path == "":
		return "is the app root, not a file"
	case tree.IsFile(path):
		return ""
	case tree.IsDir(path):
		return "is a directory in the pushed tree, not a file"
	}
	return "does not exist in the pushed tree"
}

// pathFix is the advice after any problem with a path in app.ini.
const pathFix = "write the path relative to the app root (the top of the repository), without .., and make sure the file is committed"
