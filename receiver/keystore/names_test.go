package keystore

import (
	"errors"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{name: "alice", ok: true},
		{name: "Alice", ok: true},
		{name: "alice@laptop", ok: true},
		{name: "ci.deploy_bot-2", ok: true},
		{name: "0day", ok: true},
		{name: "a", ok: true},
		{name: strings.Repeat("a", 64), ok: true},
		{name: strings.Repeat("a", 65)},
		{name: ""},
		{name: "-alice"},
		{name: ".alice"},
		{name: "@alice"},
		{name: "alice smith"},
		{name: "alice:laptop"},
		{name: "SHA256:abc"},
		{name: "alice\n"},
		{name: "alicé"},
		{name: "a/b"},
	}
	for _, tc := range tests {
		err := ValidName(tc.name)
		if tc.ok && err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalidName", tc.name, err)
		}
	}
}

func TestValidAppName(t *testing.T) {
	tests := []struct {
		app string
		ok  bool
	}{
		{app: "myapp", ok: true},
		{app: "blog-2", ok: true},
		{app: "a", ok: true},
		{app: "a" + strings.Repeat("b", 62), ok: true},
		{app: "a" + strings.Repeat("b", 63)},
		{app: ""},
		{app: "MyApp"},
		{app: "2app"},
		{app: "-app"},
		{app: "my_app"},
		{app: "my.app"},
		{app: "my app"},
		{app: "app,blog"},
		{app: "../etc"},
	}
	for _, tc := range tests {
		err := ValidAppName(tc.app)
		if tc.ok && err != nil {
			t.Errorf("ValidAppName(%q) = %v, want nil", tc.app, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalidApp) {
			t.Errorf("ValidAppName(%q) = %v, want ErrInvalidApp", tc.app, err)
		}
	}
}

func TestValidNameMessageNamesInput(t *testing.T) {
	err := ValidName("alice smith")
	if err == nil || !strings.Contains(err.Error(), `"alice smith"`) {
		t.Errorf("ValidName error %v does not name the input", err)
	}
}
