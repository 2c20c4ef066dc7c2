package services

import (
	"archive/tar"
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzFilesBackup: CheckBackup never panics, and what it accepts holds
// only local paths of the three entry types it allows.
func FuzzFilesBackup(f *testing.F) {
	f.Add(makeFilesArchive(f))
	f.Add(makeFilesArchive(f, dirArchiveEntry("a/"), fileEntry("a/b", "hello"), symlinkEntry("l", "a/b"), symlinkEntry("a/up", "..")))
	for _, h := range hostileFilesArchives(f) {
		f.Add(h.data)
	}
	s, ok := Lookup("files")
	if !ok {
		f.Fatal("files is not registered")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := s.CheckBackup(bytes.NewReader(data)); err != nil {
			return
		}
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("CheckBackup accepted an archive tar cannot read: %v", err)
			}
			name := strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "./"), "/")
			if name != "" && name != "." && !filepath.IsLocal(name) {
				t.Fatalf("CheckBackup accepted the path %q", hdr.Name)
			}
			switch hdr.Typeflag {
			case tar.TypeReg, tar.TypeDir:
			case tar.TypeSymlink:
				if filepath.IsAbs(hdr.Linkname) || !filepath.IsLocal(filepath.Join(filepath.Dir(name), hdr.Linkname)) {
					t.Fatalf("CheckBackup accepted the symlink %q -> %q", hdr.Name, hdr.Linkname)
				}
			default:
				t.Fatalf("CheckBackup accepted an entry of type %q", hdr.Typeflag)
			}
		}
	})
}
