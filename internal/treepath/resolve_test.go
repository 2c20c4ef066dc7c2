package treepath

import (
	"errors"
	"testing"
)

func TestResolve(t *testing.T) {
	links := map[string]string{
		"static":      "app/static",
		"app/up":      "../..",
		"app/abs":     "/etc",
		"loop":        "loop",
		"a/b/rel":     "../c",
		"app/static2": "static",
	}
	link := func(p string) (string, bool) { t, ok := links[p]; return t, ok }
	for _, tc := range []struct {
		dir, rel, want string
		err            error
	}{
		{"", "static/css/x.css", "app/static/css/x.css", nil},
		{"", "app/static2/x", "app/static/x", nil},
		{"a/b", "../c", "a/c", nil},
		{"", "a/b/rel/d", "a/c/d", nil},
		{"", "app/up/x", "", ErrOutside},
		{"", "..", "", ErrOutside},
		{"", "app/abs/passwd", "", ErrAbsolute},
		{"", "loop/x", "", ErrLoop},
		{"", "missing/file", "missing/file", nil},
	} {
		got, err := Resolve(tc.dir, tc.rel, link)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q, %v", tc.dir, tc.rel, got, err, tc.want, tc.err)
		}
	}
}
