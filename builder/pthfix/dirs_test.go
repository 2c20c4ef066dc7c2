package pthfix

import (
	"slices"
	"testing"
)

func TestDirsIsDir(t *testing.T) {
	d := NewDirs([]string{"src/myapp", "/static/", "a//b", "c/../d", "./e", "lib/python", "f\xff/g", "h\r/i", "j\nk"})
	tests := []struct {
		path string
		want bool
	}{
		{"", true},
		{"src", true},
		{"src/myapp", true},
		{"static", true},
		{"lib", true},
		{"lib/python", true},
		{"src/other", false},
		{"/src", false},
		{"a", false}, // a//b has an empty component: skipped entirely
		{"c", false},
		{"e", false},
		{"f\xff", false}, // not UTF-8: no .pth entry could name it
		{"h\r", false},   // nor a line break
		{"j\nk", false},
	}
	for _, tt := range tests {
		if got := d.IsDir(tt.path); got != tt.want {
			t.Errorf("IsDir(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
	var empty *Dirs
	if !empty.IsDir("") || empty.IsDir("src") {
		t.Errorf("nil *Dirs should hold the root only")
	}
}

func TestDirsLongestSuffix(t *testing.T) {
	d := NewDirs([]string{"myapp", "src/myapp", "vendor/x/src/myapp", "a/lib", "b/lib", "src/notmyapp", "c/z/lib"})
	tests := []struct {
		path  string
		want  []string
		wantN int
	}{
		{"/home/alice/proj/src/myapp", []string{"src/myapp"}, 2}, // the exact suffix beats vendor/x/src/myapp
		{"/home/alice/proj/vendor/x/src/myapp", []string{"vendor/x/src/myapp"}, 4},
		{"/home/alice/myapp", []string{"myapp"}, 1},
		{"/home/alice/notmyapp", []string{"src/notmyapp"}, 1},
		{"/x/lib", []string{"a/lib", "b/lib", "c/z/lib"}, 1},
		{"/x/z/lib", []string{"c/z/lib"}, 2},
		{"/x/zz/lib", []string{"a/lib", "b/lib", "c/z/lib"}, 1},
		{"/y/src", []string{"src"}, 1},
		{"/x/src", []string{"vendor/x/src"}, 2},
		{"/x/z", []string{"c/z"}, 1},
		{"/x/c/z/lib/more", nil, 0},
		{"/x/b/lib/", []string{"b/lib"}, 2},
		{"/x/./b//lib", []string{"b/lib"}, 2},
		{"/x/app", nil, 0},
		{"/", nil, 0},
		{"", nil, 0},
	}
	for _, tt := range tests {
		got, n := d.LongestSuffix(tt.path)
		if !slices.Equal(got, tt.want) || n != tt.wantN {
			t.Errorf("LongestSuffix(%q) = %q, %d; want %q, %d", tt.path, got, n, tt.want, tt.wantN)
		}
	}
}

func TestRelPath(t *testing.T) {
	tests := []struct {
		dir, target, want string
	}{
		{"lib/python", "src/myapp", "../../src/myapp"},
		{"lib/python3.11/site-packages", "src/myapp", "../../../src/myapp"},
		{"lib/python", "lib/python/mylib", "mylib"},
		{"lib/python", "lib/python", "."},
		{"lib/python", "lib", ".."},
		{"lib/python", "lib/other", "../other"},
		{"", "src/myapp", "src/myapp"},
		{"lib/python", "", "../.."},
		{"", "", "."},
	}
	for _, tt := range tests {
		if got := relPath(tt.dir, tt.target); got != tt.want {
			t.Errorf("relPath(%q, %q) = %q, want %q", tt.dir, tt.target, got, tt.want)
		}
	}
}

func TestRewriteString(t *testing.T) {
	r := Rewrite{File: "lib/python/myapp.pth", Line: 1, From: "/home/alice/myapp/src/myapp", To: "../../src/myapp"}
	want := "lib/python/myapp.pth:1: /home/alice/myapp/src/myapp -> ../../src/myapp"
	if got := r.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestLongestSuffixAgainstScan compares the index with a scan of every
// directory on a tree full of repeated names, where runs are long.
func TestLongestSuffixAgainstScan(t *testing.T) {
	names := []string{"a", "b", "src", "lib"}
	var paths []string
	for _, x := range names {
		for _, y := range names {
			for _, z := range names {
				if x != z {
					paths = append(paths, x+"/"+y+"/"+z)
				}
			}
		}
	}
	d := NewDirs(paths)
	queries := []string{"/", "/q"}
	for _, x := range append(names, "q") {
		for _, y := range append(names, "q") {
			queries = append(queries, "/"+x, "/"+x+"/"+y, "/h/"+x+"/"+y+"/"+x, "/"+y+"/"+x+"/"+y+"/"+x)
		}
	}
	for _, q := range queries {
		got, _ := d.LongestSuffix(q)
		if want := naiveLongestSuffix(d, q); !slices.Equal(got, want) {
			t.Errorf("LongestSuffix(%q) = %q, want %q", q, got, want)
		}
	}
}
