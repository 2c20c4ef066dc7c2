package agent

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/gitreceive/gitreceive/manifest"
)

// release describes files as path -> content; "->x" is a symlink, a path
// under bin/ is executable.
func manifestOf(files map[string]string) manifest.Manifest {
	var m manifest.Manifest
	for p, c := range files {
		f := manifest.Entry{Path: p, Mode: manifest.ModeFile, Size: int64(len(c)), SHA256: hashOf(c)}
		if t, ok := strings.CutPrefix(c, "->"); ok {
			f = manifest.Entry{Path: p, Mode: manifest.ModeSymlink, Size: int64(len(t)), SHA256: hashOf(t), Target: t}
		} else if strings.HasPrefix(p, "bin/") {
			f.Mode = manifest.ModeExec
		}
		m = append(m, f)
	}
	sort.Slice(m, func(i, j int) bool { return m[i].Path < m[j].Path })
	return m
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// tarOf packs the contents named by hashes (looked up in files).
func tarOf(t testing.TB, files map[string]string, hashes []string) *bytes.Buffer {
	t.Helper()
	byHash := map[string]string{}
	for _, c := range files {
		byHash[hashOf(c)] = c
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hashes {
		c := byHash[h]
		if err := tw.WriteHeader(&tar.Header{Name: h, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(c))
	}
	tw.Close()
	return &buf
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func TestAssembleFullThenDelta(t *testing.T) {
	root := t.TempDir()
	v1files := map[string]string{
		"app.ini": "->src/app.ini", "src/app.ini": "[production]\n", "src/wsgi.py": "def application(): pass\n",
		"bin/manage.py": "#!/bin/sh\n", "static/a.css": "a", "static/copy.css": "a",
	}
	v1 := manifestOf(v1files)
	need := manifest.Needed(nil, v1)
	if len(need) != 4 { // "a" is sent once for two files; symlinks carry no content
		t.Fatalf("needed %d contents, want 4", len(need))
	}
	d1 := filepath.Join(root, "v1")
	if err := assemble(d1, "", nil, v1, tarOf(t, v1files, need)); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(d1, "bin/manage.py")); st.Mode().Perm() != 0o755 {
		t.Fatalf("bin/manage.py mode %v", st.Mode())
	}

	v2files := map[string]string{}
	for k, v := range v1files {
		v2files[k] = v
	}
	v2files["src/wsgi.py"] = "def application(): return 2\n"
	delete(v2files, "static/copy.css")
	// The same content as a plain file and as an executable: one inode
	// cannot carry both modes, so the executable is a copy.
	v2files["bin/same-as-ini"] = v1files["src/app.ini"]
	v2 := manifestOf(v2files)
	need = manifest.Needed(v1, v2)
	if len(need) != 1 || need[0] != hashOf(v2files["src/wsgi.py"]) {
		t.Fatalf("delta needs %v, want only the changed file", need)
	}
	d2 := filepath.Join(root, "v2")
	if err := assemble(d2, d1, v1, v2, tarOf(t, v2files, need)); err != nil {
		t.Fatal(err)
	}
	if inode(t, filepath.Join(d1, "src/app.ini")) != inode(t, filepath.Join(d2, "src/app.ini")) {
		t.Fatal("unchanged file was copied, not hard-linked")
	}
	if inode(t, filepath.Join(d1, "bin/manage.py")) != inode(t, filepath.Join(d2, "bin/manage.py")) {
		t.Fatal("unchanged executable was copied, not hard-linked")
	}
	if _, err := os.Stat(filepath.Join(d2, "static/copy.css")); err == nil {
		t.Fatal("deleted file is in v2")
	}
	if st, err := os.Stat(filepath.Join(d2, "bin/same-as-ini")); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("bin/same-as-ini: %v %v", st, err)
	}
	if err := Verify(d1, v1); err != nil {
		t.Fatalf("v1 changed by building v2: %v", err)
	}

	// Verify notices tampering and strays.
	os.WriteFile(filepath.Join(d2, "stray"), []byte("x"), 0o644)
	if err := Verify(d2, v2); err == nil || !strings.Contains(err.Error(), "stray is not in the manifest") {
		t.Fatalf("stray file: %v", err)
	}
	os.Remove(filepath.Join(d2, "stray"))
	os.WriteFile(filepath.Join(d2, "src/wsgi.py"), []byte("def application(): return 3\n"), 0o644)
	if err := Verify(d2, v2); err == nil || !strings.Contains(err.Error(), "src/wsgi.py does not have the content") {
		t.Fatalf("tampered file: %v", err)
	}
}

func TestAssembleRefusesHostileInput(t *testing.T) {
	files := map[string]string{"a.py": "a", "lib/b.py": "b"}
	good := manifestOf(files)
	goodTar := func() *bytes.Buffer { return tarOf(t, files, manifest.Needed(nil, good)) }
	entry := func(name string, flag byte, body string) *bytes.Buffer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: flag, Size: int64(len(body)), Mode: 0o644, Linkname: "/etc/passwd"})
		tw.Write([]byte(body))
		tw.Close()
		return &buf
	}
	for _, tc := range []struct {
		name     string
		manifest manifest.Manifest
		contents *bytes.Buffer
		want     string
	}{
		{"dot-dot path", append(manifest.Manifest{{Path: "../evil", Mode: manifest.ModeFile, SHA256: hashOf("a"), Size: 1}}, good...), goodTar(), "not a clean relative path"},
		{"absolute path", manifest.Manifest{{Path: "/etc/evil", Mode: manifest.ModeFile, SHA256: hashOf("a"), Size: 1}}, goodTar(), "not a clean relative path"},
		{"unclean path", manifest.Manifest{{Path: "a/./b", Mode: manifest.ModeFile, SHA256: hashOf("a"), Size: 1}}, goodTar(), "not a clean relative path"},
		{"duplicate path", manifest.Manifest{good[0], good[0]}, goodTar(), "twice"},
		{"write through symlink", manifest.Manifest{{Path: "lib", Mode: manifest.ModeSymlink, Target: "x", SHA256: hashOf("x"), Size: 1}, good[1]}, goodTar(), "beneath the file or symlink"},
		{"escaping symlink", manifest.Manifest{{Path: "s", Mode: manifest.ModeSymlink, Target: "../../etc", SHA256: hashOf("x"), Size: 1}}, goodTar(), "leaves the release"},
		{"absolute symlink", manifest.Manifest{{Path: "s", Mode: manifest.ModeSymlink, Target: "/etc", SHA256: hashOf("x"), Size: 1}}, goodTar(), "bad target"},
		{"bad mode", manifest.Manifest{{Path: "a", Mode: "device", SHA256: hashOf("a"), Size: 1}}, goodTar(), "unknown mode"},
		{"bad hash", manifest.Manifest{{Path: "a", Mode: manifest.ModeFile, SHA256: "zz", Size: 1}}, goodTar(), "bad hash"},
		{"tar path trick", good, entry("../../etc/passwd", tar.TypeReg, "x"), "unexpected entry"},
		{"tar symlink", good, entry(hashOf("a"), tar.TypeSymlink, ""), "unexpected entry"},
		{"tar hard link", good, entry(hashOf("a"), tar.TypeLink, ""), "unexpected entry"},
		{"tar unrequested content", good, entry(hashOf("zzz"), tar.TypeReg, "zzz"), "unexpected entry"},
		{"tar corrupted content", good, entry(hashOf("a"), tar.TypeReg, "X"), "arrived corrupted"},
		{"tar missing content", good, entry(hashOf("a"), tar.TypeReg, "a"), "lack 1 of the files"},
		{"tar garbage", good, bytes.NewBufferString(strings.Repeat("garbage!", 200)), "reading the release contents"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dst := filepath.Join(root, "v1")
			err := assemble(dst, "", nil, tc.manifest, tc.contents)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error with %q, got %v", tc.want, err)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Fatalf("a refused release left %v behind", entries)
			}
		})
	}
}
