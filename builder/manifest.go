package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// File modes in a manifest.
const (
	ModeFile    = "file"
	ModeExec    = "exec"
	ModeSymlink = "symlink"
)

// ManifestEntry describes one file of a release. Size and SHA256 are of the
// content the release holds (a fixed .pth file's new content; a symlink's
// target text).
type ManifestEntry struct {
	Path   string `json:"path"`
	Mode   string `json:"mode"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Target string `json:"target,omitempty"` // symlinks
	// Blob is the git object the content comes from; empty when the
	// builder changed the content. Not part of the manifest hash.
	Blob string `json:"blob,omitempty"`
}

// Manifest is every file of a release, sorted by path.
type Manifest []ManifestEntry

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

// blobHashes maps git blob ids to the sha256 of their content, from a
// previous release: blobs are immutable, so a file that did not change is
// not read again.
func (m Manifest) blobHashes() map[string]string {
	known := make(map[string]string, len(m))
	for _, e := range m {
		if e.Blob != "" && e.Mode != ModeSymlink {
			known[e.Blob] = e.SHA256
		}
	}
	return known
}

func sha256Hex(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func sha256String(s string) string {
	sum, _, _ := sha256Hex(strings.NewReader(s))
	return sum
}
