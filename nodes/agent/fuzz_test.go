package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzAssembleContents feeds arbitrary bytes as the tar stream of a small
// release: Assemble must never panic, never write outside its release
// directory, and either fail leaving nothing or produce a verified release.
func FuzzAssembleContents(f *testing.F) {
	files := map[string]string{"a.py": "a", "lib/b.py": "b", "bin/run": "#!/bin/sh\n", "link": "->a.py"}
	m := manifestOf(files)
	good := tarOf(f, files, Needed(nil, m)).Bytes()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dst := filepath.Join(root, "release", "v1")
		if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		err := Assemble(dst, "", nil, m, bytes.NewReader(data))
		entries, _ := os.ReadDir(root)
		if len(entries) != 1 {
			t.Fatalf("Assemble wrote beside its release directory: %v", entries)
		}
		if err != nil {
			if _, statErr := os.Stat(dst); statErr == nil {
				t.Fatal("a failed Assemble left its release directory")
			}
			return
		}
		if err := Verify(dst, m); err != nil {
			t.Fatalf("Assemble succeeded but Verify fails: %v", err)
		}
	})
}
