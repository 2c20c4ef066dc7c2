package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"

	mf "github.com/gitreceive/gitreceive/manifest"
)

// File modes in a manifest (package manifest's).
const (
	ModeFile    = mf.ModeFile
	ModeExec    = mf.ModeExec
	ModeSymlink = mf.ModeSymlink
)

// ManifestEntry and Manifest are package manifest's types, the one
// manifest that builder, receiver, nodes and the node agent share; the
// names stay for the builder's callers.
type (
	ManifestEntry = mf.Entry
	Manifest      = mf.Manifest
)

// blobHashes maps git blob ids to the sha256 of their content, from a
// previous release: blobs are immutable, so a file that did not change is
// not read again.
func blobHashes(m Manifest) map[string]string {
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
