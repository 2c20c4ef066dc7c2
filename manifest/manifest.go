// Package manifest is the list of a release's files: what the builder
// records, the receiver sends and a node's agent checks a release against.
// It is a leaf package so that builder, receiver, nodes and the agent share
// one type.
package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// File modes in a manifest.
const (
	ModeFile    = "file"
	ModeExec    = "exec"
	ModeSymlink = "symlink"
)

// Entry describes one file of a release. Size and SHA256 are of the
// content the release holds (a fixed .pth file's new content; a symlink's
// target text).
type Entry struct {
	Path   string `json:"path"`
	Mode   string `json:"mode"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Target string `json:"target,omitempty"` // symlinks
	// Blob is the git object the content comes from; empty when the
	// builder changed the content. Not part of the manifest hash, and
	// not sent to nodes (WithoutBlobs).
	Blob string `json:"blob,omitempty"`
}

// Manifest is every file of a release, sorted by path.
type Manifest []Entry

// Hash identifies the release content: equal hashes, equal files.
func (m Manifest) Hash() string {
	h := sha256.New()
	for _, e := range m {
		fmt.Fprintf(h, "%s %d %s %s\n", e.Mode, e.Size, e.SHA256, e.Path)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TotalSize is the sum of the file sizes.
func (m Manifest) TotalSize() int64 {
	var n int64
	for _, e := range m {
		n += e.Size
	}
	return n
}

// WithoutBlobs is a copy of m without the git blob ids, which only the
// receiver's own history needs: what crosses the wire to a node.
func (m Manifest) WithoutBlobs() Manifest {
	c := make(Manifest, len(m))
	for i, e := range m {
		e.Blob = ""
		c[i] = e
	}
	return c
}

// Needed returns the content hashes of want that have no regular file in
// have: what the receiver must send. Each content is sent once.
func Needed(have, want Manifest) []string {
	present := map[string]bool{}
	for _, f := range have {
		if f.Mode != ModeSymlink {
			present[f.SHA256] = true
		}
	}
	var need []string
	for _, f := range want {
		if f.Mode != ModeSymlink && !present[f.SHA256] {
			present[f.SHA256] = true
			need = append(need, f.SHA256)
		}
	}
	sort.Strings(need)
	return need
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks a manifest from the wire: clean relative UTF-8 paths,
// known modes, hex hashes, relative symlink targets that stay inside, no
// duplicate paths, and no path beneath a file or a symlink (writing through
// a symlink could leave the release directory).
func (m Manifest) Validate() error {
	seen := make(map[string]string, len(m))
	for _, f := range m {
		if err := CheckRelPath(f.Path); err != nil {
			return err
		}
		if _, dup := seen[f.Path]; dup {
			return fmt.Errorf("manifest lists %q twice", f.Path)
		}
		seen[f.Path] = f.Mode
		switch f.Mode {
		case ModeFile, ModeExec:
			if !sha256Hex.MatchString(f.SHA256) || f.Size < 0 {
				return fmt.Errorf("manifest entry %q has a bad hash or size", f.Path)
			}
		case ModeSymlink:
			if f.Target == "" || strings.HasPrefix(f.Target, "/") || strings.ContainsRune(f.Target, 0) {
				return fmt.Errorf("symlink %q has a bad target %q", f.Path, f.Target)
			}
			if t := path.Join(path.Dir(f.Path), f.Target); t == ".." || strings.HasPrefix(t, "../") {
				return fmt.Errorf("symlink %q -> %q leaves the release", f.Path, f.Target)
			}
		default:
			return fmt.Errorf("manifest entry %q has unknown mode %q", f.Path, f.Mode)
		}
	}
	for p := range seen {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, isEntry := seen[dir]; isEntry {
				return fmt.Errorf("manifest puts %q beneath the file or symlink %q", p, dir)
			}
		}
	}
	return nil
}

// CheckRelPath refuses a manifest path that is not clean, relative UTF-8
// staying inside the release.
func CheckRelPath(p string) error {
	if p == "" || !utf8.ValidString(p) || strings.ContainsRune(p, 0) || path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("manifest path %q is not a clean relative path", p)
	}
	return nil
}

// IsSHA256 reports whether s is a lower-case hex sha256, as manifests and
// content streams name contents.
func IsSHA256(s string) bool { return sha256Hex.MatchString(s) }
