package pthfix

import (
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// Tree tells which directories exist in the pushed tree. Paths are
// slash-separated, relative to the app root, without a leading slash; ""
// is the root.
type Tree interface {
	IsDir(path string) bool
}

// Dirs is the set of directories of one pushed tree, indexed for the
// longest-suffix search Fix does for every absolute entry. Build it once per
// tree with NewDirs; it is read-only afterwards and safe for concurrent use.
type Dirs struct {
	set map[string]struct{}
	// bySuffix holds every directory but the root, sorted by its
	// components read backwards (last component first). Directories that
	// share trailing components are then neighbours, and those sharing the
	// most with a given path form one run that two binary searches find:
	// a lookup costs O(log n) even when thousands of directories are named
	// "src" or "tests", which a scan of same-named candidates would not.
	bySuffix []dirEntry
}

// dirEntry is one directory with its components already reversed, so
// lookups compare them without splitting paths again.
type dirEntry struct {
	path   string
	rcomps []string
}

var _ Tree = (*Dirs)(nil)

// NewDirs indexes the directories of a tree. Each path is slash-separated
// and relative to the app root; surrounding slashes are ignored. The
// ancestors of every path are added too, and the root "" is always present.
//
// Paths with an empty, "." or ".." component are skipped, since git cannot
// check out such a directory, and so are paths that are not valid UTF-8 or
// hold a NUL, CR or LF: a .pth line cannot spell them (Fix only accepts
// UTF-8, and the others end or break the line), so no entry could be
// rewritten to name them.
func NewDirs(paths []string) *Dirs {
	d := &Dirs{set: map[string]struct{}{"": {}}}
	for _, p := range paths {
		p = strings.Trim(p, "/")
		if p == "" {
			continue
		}
		comps := strings.Split(p, "/")
		if !utf8.ValidString(p) || !validComponents(comps) {
			continue
		}
		d.add(p, comps)
	}
	slices.SortFunc(d.bySuffix, func(a, b dirEntry) int { return slices.Compare(a.rcomps, b.rcomps) })
	return d
}

// add records p and, walking up, every ancestor not yet known. Stopping at
// the first known one is safe because a known directory's ancestors were
// added with it.
func (d *Dirs) add(p string, comps []string) {
	for i := len(comps); i > 0; i-- {
		if _, ok := d.set[p]; ok {
			return
		}
		d.set[p] = struct{}{}
		d.bySuffix = append(d.bySuffix, dirEntry{path: p, rcomps: reversed(comps[:i])})
		if i > 1 {
			p = p[:len(p)-len(comps[i-1])-1]
		}
	}
}

func validComponents(comps []string) bool {
	for _, c := range comps {
		if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "\x00\r\n") {
			return false
		}
	}
	return true
}

// IsDir reports whether path is a directory of the tree. A nil *Dirs is an
// empty tree.
func (d *Dirs) IsDir(path string) bool {
	if d == nil {
		return path == ""
	}
	_, ok := d.set[path]
	return ok
}

// LongestSuffix finds the directories whose trailing components match the
// most trailing components of p (a slash path, usually absolute; empty and
// "." components are ignored). It returns them sorted by path together with
// the number of matching components, or nil and 0 when not even the last
// component matches. More than one result means the match is ambiguous.
//
// Components match whole: /x/notsrc/myapp shares one component (myapp) with
// src/myapp, not two.
func (d *Dirs) LongestSuffix(p string) (matches []string, n int) {
	run, n := d.suffixRun(splitPath(p))
	for _, e := range run {
		matches = append(matches, e.path)
	}
	slices.Sort(matches)
	return matches, n
}

// suffixRun returns the directories sharing the most trailing components
// with the path made of comps, and how many they share; nil and 0 when none
// shares the last one.
func (d *Dirs) suffixRun(comps []string) (run []dirEntry, n int) {
	if d == nil || len(comps) == 0 {
		return nil, 0
	}
	q := reversed(comps)
	// In sorted order the longest common prefix with q is found next to
	// where q would be inserted.
	i, _ := slices.BinarySearchFunc(d.bySuffix, q, func(e dirEntry, q []string) int {
		return slices.Compare(e.rcomps, q)
	})
	if i > 0 {
		n = commonPrefixLen(q, d.bySuffix[i-1].rcomps)
	}
	if i < len(d.bySuffix) {
		n = max(n, commonPrefixLen(q, d.bySuffix[i].rcomps))
	}
	if n == 0 {
		return nil, 0
	}
	// Everything starting with q[:n] is one contiguous run around i.
	prefix := q[:n]
	lo := sort.Search(i, func(j int) bool { return comparePrefix(d.bySuffix[j].rcomps, prefix) >= 0 })
	hi := i + sort.Search(len(d.bySuffix)-i, func(j int) bool { return comparePrefix(d.bySuffix[i+j].rcomps, prefix) > 0 })
	run = d.bySuffix[lo:hi]
	// A directory that is itself the whole common suffix (src/myapp for
	// /home/alice/myapp/src/myapp) beats deeper ones that merely end the
	// same way (vendor/src/myapp): it is the one the developer's path named.
	// Sorted by reversed components, it is the first of the run.
	if len(run[0].rcomps) == n {
		return run[:1], n
	}
	return run, n
}

// comparePrefix orders s against prefix looking only at s's first
// len(prefix) components; it is 0 when s starts with prefix.
func comparePrefix(s, prefix []string) int {
	return slices.Compare(s[:min(len(s), len(prefix))], prefix)
}

func commonPrefixLen(a, b []string) int {
	k := 0
	for k < len(a) && k < len(b) && a[k] == b[k] {
		k++
	}
	return k
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

// splitPath splits a slash path into its components, dropping empty and "."
// ones the way path.Clean would (it keeps ".." for the caller to reject).
func splitPath(p string) []string {
	var comps []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			comps = append(comps, c)
		}
	}
	return comps
}
