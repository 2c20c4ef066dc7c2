package pthfix

import "strings"

// Applies reports whether path (slash-separated, relative to the app root)
// is a file Fix is meant for: a *.pth or *.egg-link file directly in
// lib/python/ or in lib/pythonX.Y/site-packages/.
//
// Only those two directories are site directories, the places Python (or
// pip, for .egg-link) reads such files from; the same names elsewhere, such
// as lib/python/sub/x.pth or lib/python/site-packages/x.pth, are ordinary
// files and are left alone.
func Applies(path string) bool {
	parts := strings.Split(path, "/")
	switch len(parts) {
	case 3:
		return parts[0] == "lib" && parts[1] == "python" && isFixableName(parts[2])
	case 4:
		return parts[0] == "lib" && isVersionedPython(parts[1]) &&
			parts[2] == "site-packages" && isFixableName(parts[3])
	}
	return false
}

// isVersionedPython matches the lib/ directory of a virtualenv, python
// followed by its version (python3.11); plain "python" is Silver Lining's
// own layout, which has no site-packages below it.
func isVersionedPython(name string) bool {
	return len(name) > len("python") && strings.HasPrefix(name, "python")
}

// isFixableName reports whether a file name has one of the two extensions
// and a name before it.
func isFixableName(name string) bool {
	for _, ext := range []string{pthExt, eggLinkExt} {
		if len(name) > len(ext) && strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

const (
	pthExt     = ".pth"
	eggLinkExt = ".egg-link"
)
