package appconfig

import (
	"reflect"
	"testing"

	"gopkg.in/ini.v1"
)

func TestIndexLines(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		section string
		key     string
		want    []int
	}{
		{"simple", "[production]\na = 1\nb = 2\n", "production", "b", []int{3}},
		{"default section", "a = 1\n[production]\n", ini.DefaultSection, "a", []int{1}},
		{"repeated", "[production]\na = 1\na = 2\n", "production", "a", []int{2, 3}},
		{"repeated section", "[production]\na = 1\n[x]\n[production]\na = 2\n", "production", "a", []int{2, 5}},
		{"indented key", "[production]\n  a = 1\n", "production", "a", []int{2}},
		{"continuation is not a key", "[production]\na =\n  b = 1\nc = 2\n", "production", "b", nil},
		{"after a continuation", "[production]\na =\n  x\n  y\nc = 2\n", "production", "c", []int{5}},
		{"quoted value does not continue", "[production]\na = \"x\"\n  c = 2\n", "production", "c", []int{3}},
		{"triple-quoted value spans lines", "[production]\na = \"\"\"x\nb = 1\n\"\"\"\nc = 2\n", "production", "b", nil},
		{"after a triple-quoted value", "[production]\na = \"\"\"x\nb = 1\n\"\"\"\nc = 2\n", "production", "c", []int{5}},
		{"quoted key", "[production]\n\"a b\" = 1\n", "production", "a b", []int{2}},
		{"colon delimiter", "[production]\na: 1\n", "production", "a", []int{2}},
		{"auto-numbered key", "[production]\n- = 1\n- = 2\n", "production", "#2", []int{3}},
		{"CRLF", "[production]\r\na = 1\r\n  x\r\nb = 2\r\n", "production", "b", []int{4}},
		{"comments", "[production]\n# a = 1\n; a = 2\na = 3\n", "production", "a", []int{4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := indexLines([]byte(tc.data))
			if got := ix.keyLines(tc.section, tc.key); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("keyLines(%q, %q) = %v, want %v", tc.section, tc.key, got, tc.want)
			}
			// The index must agree with the parser on every key it read.
			f, err := ini.LoadSources(loadOptions, []byte(tc.data))
			if err != nil {
				t.Fatalf("ini: %v", err)
			}
			for _, s := range f.Sections() {
				for _, k := range s.Keys() {
					if ix.keyLine(s.Name(), k.Name()) == 0 {
						t.Errorf("no line for [%s] %s", s.Name(), k.Name())
					}
				}
			}
		})
	}
}

func TestIndexLinesFindsBadLine(t *testing.T) {
	tests := []struct {
		name       string
		data       string
		line       int
		afterBlank bool
	}{
		{"fine", "[production]\na = 1\n", 0, false},
		{"no delimiter", "[production]\na = 1\nb\n", 3, false},
		{"empty key", "[production]\n= 1\n", 2, false},
		{"empty quoted key", "[production]\n\"\" = 1\n", 2, false},
		{"unclosed section", "[production\n", 1, false},
		{"empty section name", "[]\n", 1, false},
		{"unclosed quoted key", "[production]\n\"a = 1\n", 2, false},
		{"unclosed triple quote", "[production]\na = \"\"\"x\ny\n", 2, false},
		{"blank line in a multi-line value", "[production]\na =\n  x\n\n  y\n", 5, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := indexLines([]byte(tc.data))
			want := badLine{line: tc.line, afterBlank: tc.afterBlank}
			if ix.bad != want {
				t.Errorf("bad = %+v, want %+v", ix.bad, want)
			}
			_, err := ini.LoadSources(loadOptions, []byte(tc.data))
			if (err != nil) != (tc.line != 0) {
				t.Errorf("ini error = %v, but bad line = %d", err, tc.line)
			}
		})
	}
}
