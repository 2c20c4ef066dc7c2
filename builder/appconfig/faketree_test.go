package appconfig

import "strings"

// fakeTree is a Tree holding the given files; their parent directories
// exist implicitly.
type fakeTree map[string]bool // path -> is a directory

func newFakeTree(files ...string) fakeTree {
	t := fakeTree{}
	for _, f := range files {
		t[f] = false
		for dir := f; strings.Contains(dir, "/"); {
			dir = dir[:strings.LastIndex(dir, "/")]
			t[dir] = true
		}
	}
	return t
}

func (t fakeTree) IsFile(path string) bool {
	isDir, ok := t[path]
	return ok && !isDir
}

func (t fakeTree) IsDir(path string) bool { return t[path] }

// sampleTree is the tree most tests push.
var sampleTree = newFakeTree(
	"src/app/wsgi.py",
	"src/app/models.py",
	"bin/setup.py",
	"bin/migrate",
	"index.php",
	"web/index.php",
)
