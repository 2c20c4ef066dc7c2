package builder

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/gitreceive/gitreceive/hooks"
	"github.com/gitreceive/gitreceive/internal/treepath"
)

// node is one blob of the pushed tree: a file or a symlink.
type node struct {
	entry
	target string // symlinks: the link text
}

func (n *node) isLink() bool { return n.mode == "120000" }
func (n *node) isExec() bool { return n.mode == "100755" }

// tree is the pushed tree, checked against the tree rules: no submodules,
// no path tricks, no symlink that leaves the app.
type tree struct {
	blobs map[string]*node
	dirs  map[string]bool // "" is the root
	paths []string        // blob paths, sorted
	size  int64           // sum of blob sizes
}

func buildTree(entries []entry, blobs *blobReader, sizeLimit int64) (*tree, error) {
	t := &tree{blobs: map[string]*node{}, dirs: map[string]bool{"": true}}
	for _, e := range entries {
		if err := checkPath(e.path); err != nil {
			return nil, err
		}
		switch {
		case e.kind == "tree":
			t.dirs[e.path] = true
		case e.kind == "commit" || e.mode == "160000":
			return nil, fmt.Errorf("%s is a git submodule, which is not supported; add its files to this repository instead", e.path)
		case e.kind == "blob":
			n := &node{entry: e}
			if n.isLink() {
				target, err := blobs.read(e.oid, 4096)
				if err != nil {
					return nil, fmt.Errorf("reading symlink %s: %w", e.path, err)
				}
				n.target = string(target)
			}
			t.blobs[e.path] = n
			t.paths = append(t.paths, e.path)
			t.size += e.size
		default:
			return nil, fmt.Errorf("%s has an unexpected object type %q", e.path, e.kind)
		}
	}
	if t.size > sizeLimit {
		return nil, fmt.Errorf("the app is %s, more than the release size limit of %s; remove large files from the repository (or raise max_release_size in gitreceive.ini)", hooks.Size(t.size), hooks.Size(sizeLimit))
	}
	sort.Strings(t.paths)
	if err := t.checkLinks(); err != nil {
		return nil, err
	}
	return t, nil
}

// maxLinksShown bounds the symlinks one rejection names.
const maxLinksShown = 20

// linkFix is the advice after the symlinks a push cannot deploy.
const linkFix = "replace each with a relative link to a file inside the repository (ln -sr), or commit the files it points to instead (copy with cp -rL, not cp -a)"

// checkLinks refuses symlinks that leave the app or lead nowhere, naming
// every one (up to maxLinksShown): a tree copied with cp -a can hold dozens,
// and a push that names one per try wastes as many pushes.
func (t *tree) checkLinks() error {
	var bad []string
	for _, p := range t.paths {
		n := t.blobs[p]
		if !n.isLink() {
			continue
		}
		err := checkLinkTarget(p, n.target)
		if err == nil {
			if _, rerr := t.resolve(p); rerr != nil {
				err = fmt.Errorf("symlink %s -> %s: %w", p, n.target, rerr)
			}
		}
		if err != nil {
			bad = append(bad, err.Error())
		}
	}
	switch {
	case len(bad) == 0:
		return nil
	case len(bad) == 1:
		return fmt.Errorf("%s (or commit the files it points to: cp -rL, not cp -a)", bad[0])
	}
	shown := bad[:min(len(bad), maxLinksShown)]
	more := ""
	if len(bad) > len(shown) {
		more = fmt.Sprintf("\n  ... and %d more", len(bad)-len(shown))
	}
	return fmt.Errorf("%d symlinks cannot be deployed:\n  %s%s\n%s", len(bad), strings.Join(shown, "\n  "), more, linkFix)
}

func checkPath(p string) error {
	if !utf8.ValidString(p) {
		return fmt.Errorf("the path %q is not valid UTF-8; rename it", p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("the path %q has an empty, \".\" or \"..\" component; rename it", p)
		}
	}
	if strings.ContainsAny(p, "\x00\n\r") {
		return fmt.Errorf("the path %q contains a control character; rename it", p)
	}
	return nil
}

func checkLinkTarget(link, target string) error {
	if target == "" || strings.ContainsRune(target, 0) {
		return fmt.Errorf("symlink %s has an empty or invalid target", link)
	}
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("symlink %s -> %s points outside the app (absolute path); use a relative link to a file inside the repository", link, target)
	}
	return nil
}

// resolve follows symlinks in every component of p and returns the in-tree
// path it names. A link that climbs out of the app is an error.
func (t *tree) resolve(p string) (string, error) {
	r, err := treepath.Resolve("", p, func(q string) (string, bool) {
		if n, ok := t.blobs[q]; ok && n.isLink() {
			return n.target, true
		}
		return "", false
	})
	var e *treepath.Error
	switch {
	case !errors.As(err, &e):
		return r, err
	case errors.Is(err, treepath.ErrLoop):
		return "", fmt.Errorf("symlink %s is part of a loop; fix the link", e.Link)
	case errors.Is(err, treepath.ErrAbsolute):
		return "", fmt.Errorf("symlink %s -> %s points outside the app (absolute path); use a relative link to a file inside the repository", e.Link, e.Target)
	default:
		return "", fmt.Errorf("%s leads outside the app; use a relative link to a file inside the repository", p)
	}
}

// IsFile reports whether p names a regular file, through in-tree symlinks.
func (t *tree) IsFile(p string) bool {
	r, err := t.resolve(p)
	if err != nil {
		return false
	}
	n, ok := t.blobs[r]
	return ok && !n.isLink()
}

// IsDir reports whether p names a directory, through in-tree symlinks.
func (t *tree) IsDir(p string) bool {
	r, err := t.resolve(p)
	return err == nil && t.dirs[r]
}

func (t *tree) dirList() []string {
	dirs := make([]string, 0, len(t.dirs))
	for d := range t.dirs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	return dirs
}
