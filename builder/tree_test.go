package builder

import (
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/names"
)

// testTree builds a tree from blobs (path -> content; "->target" makes a
// symlink) without git.
func testTree(blobs map[string]string) *tree {
	t := &tree{blobs: map[string]*node{}, dirs: map[string]bool{"": true}}
	for p, content := range blobs {
		n := &node{entry: entry{mode: "100644", kind: "blob", path: p, size: int64(len(content))}}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			n.mode, n.target = "120000", target
		}
		t.blobs[p] = n
		t.paths = append(t.paths, p)
		for d := p; strings.Contains(d, "/"); {
			d = d[:strings.LastIndex(d, "/")]
			t.dirs[d] = true
		}
	}
	return t
}

func TestResolve(t *testing.T) {
	tr := testTree(map[string]string{
		"app.ini":                      "->src/sample/silver-app.ini",
		"src/sample/silver-app.ini":    "[production]",
		"src/sample/wsgi.py":           "",
		"lib/current":                  "->../src/sample",
		"static/up":                    "->../..",
		"static/abs":                   "->/etc",
		"loop/a":                       "->b",
		"loop/b":                       "->a",
		"static/deep":                  "->../lib/current/../../static",
		"static/via-escaping-dir/file": "",
	})
	for _, tc := range []struct {
		path, want, err string
	}{
		{"app.ini", "src/sample/silver-app.ini", ""},
		{"lib/current/wsgi.py", "src/sample/wsgi.py", ""},
		{"static/deep/abs", "", "points outside the app"},
		{"static/up/x", "", "leads outside the app"},
		{"static/up", "", "leads outside the app"},
		{"static/abs/passwd", "", "absolute path"},
		{"loop/a", "", "loop"},
		{"src/sample", "src/sample", ""},
	} {
		got, err := tr.resolve(tc.path)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("resolve(%q) = %q, %v; want error with %q", tc.path, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolve(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
	if !tr.IsFile("app.ini") || !tr.IsFile("lib/current/wsgi.py") || tr.IsFile("src/sample") || tr.IsFile("static/up") {
		t.Error("IsFile through links")
	}
	if !tr.IsDir("lib/current") || !tr.IsDir("") || tr.IsDir("app.ini") {
		t.Error("IsDir through links")
	}
}

func TestCheckPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"a/b.py": true, "a/../b": false, "./a": false, "a//b": false, "a/\xffb": false, "a\nb": false, "ünïcode/ok": true,
	} {
		if err := checkPath(p); (err == nil) != ok {
			t.Errorf("checkPath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func TestManifestHashIdentifiesContent(t *testing.T) {
	a := Manifest{{Path: "a", Mode: ModeFile, Size: 1, SHA256: "x"}, {Path: "b", Mode: ModeExec, Size: 2, SHA256: "y", Blob: "1"}}
	b := Manifest{{Path: "a", Mode: ModeFile, Size: 1, SHA256: "x", Blob: "9"}, {Path: "b", Mode: ModeExec, Size: 2, SHA256: "y"}}
	if a.Hash() != b.Hash() {
		t.Fatal("the git blob id changed the manifest hash")
	}
	for _, change := range []func(m Manifest){
		func(m Manifest) { m[1].Mode = ModeFile },
		func(m Manifest) { m[0].SHA256 = "z" },
		func(m Manifest) { m[0].Path = "c" },
	} {
		c := append(Manifest(nil), a...)
		change(c)
		if c.Hash() == a.Hash() {
			t.Errorf("changed manifest %v kept the hash", c)
		}
	}
	if got := blobHashes(a); len(got) != 1 || got["1"] != "y" {
		t.Fatalf("blobHashes = %v", got)
	}
}

func TestHistory(t *testing.T) {
	h := History{Dir: t.TempDir()}
	if _, _, ok, err := h.Last("app", "production"); ok || err != nil {
		t.Fatalf("empty history: %v %v", ok, err)
	}
	m := Manifest{{Path: "a", Mode: ModeFile, Size: 1, SHA256: "x"}}
	for n := 1; n <= 2; n++ {
		if err := h.Append("app", "production", Record{Number: n, ManifestHash: m.Hash()}, m); err != nil {
			t.Fatal(err)
		}
	}
	rec, got, ok, err := h.Last("app", "production")
	if err != nil || !ok || rec.Number != 2 || len(got) != 1 || got[0] != m[0] {
		t.Fatalf("Last = %+v %v %v %v", rec, got, ok, err)
	}
	if names.Instance("main") != "production" || names.Instance("master") != "production" || names.Instance("feature/x") != "branch-feature%2Fx" {
		t.Fatal("InstanceName")
	}
}
