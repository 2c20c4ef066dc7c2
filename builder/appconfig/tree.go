package appconfig

// Tree answers questions about the pushed tree. Paths are slash-separated,
// relative to the app root, with no leading "/".
type Tree interface {
	// IsFile reports whether path is a regular file, or an in-tree symlink
	// to one.
	IsFile(path string) bool
	// IsDir reports whether path is a directory.
	IsDir(path string) bool
}
