package appconfig

import "testing"

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"runner", "runner", 0},
		{"runer", "runner", 1},
		{"servce", "service", 1},
		{"kitten", "sitting", 3},
		{"héllo", "hello", 1},
	}
	for _, tc := range tests {
		if got := distance(tc.a, tc.b); got != tc.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestClosest(t *testing.T) {
	tests := []struct {
		word string
		want string
	}{
		{"runer", "runner"},
		{"RUNNER", "runner"},
		{"app-name", "app_name"},
		{"nothing_like_it", ""},
		{"wrkrs", "workers"},
	}
	for _, tc := range tests {
		if got := closest(tc.word, knownKeys); got != tc.want {
			t.Errorf("closest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
	services := []struct {
		word string
		want string
	}{
		{"postgres", "postgresql"},
		{"postgi", "postgis"},
		{"redi", "redis"},
		{"file", "files"},
		{"mongodb", ""},
	}
	for _, tc := range services {
		if got := closest(tc.word, KnownServices); got != tc.want {
			t.Errorf("closest(%q, KnownServices) = %q, want %q", tc.word, got, tc.want)
		}
	}
}

func TestSuggestKey(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		{"runer", "runner"},
		{"servce.postgis", "service.postgis"},
		{"services.redis", "service.redis"},
		{"confg.x", "config.x"},
		{"servce.", ""},
		{"zzz.x", ""},
	}
	for _, tc := range tests {
		if got := suggestKey(tc.key); got != tc.want {
			t.Errorf("suggestKey(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}
