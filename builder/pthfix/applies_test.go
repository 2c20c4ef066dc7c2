package pthfix

import "testing"

func TestApplies(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"lib/python/myapp.pth", true},
		{"lib/python/myapp.egg-link", true},
		{"lib/python3.11/site-packages/x.pth", true},
		{"lib/python2.7/site-packages/a.egg-link", true},
		{"lib/python/sub/x.pth", false},
		{"lib/python/site-packages/x.pth", false},
		{"lib/python3.11/x.pth", false},
		{"lib/python3.11/site-packages/sub/x.pth", false},
		{"src/x.pth", false},
		{"x.pth", false},
		{"lib/python/.pth", false},
		{"lib/python/.egg-link", false},
		{"lib/python/x.pth.orig", false},
		{"lib/python/x.PTH", false},
		{"lib/python/x.py", false},
		{"lib/python", false},
		{"/lib/python/x.pth", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := Applies(tt.path); got != tt.want {
			t.Errorf("Applies(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}
