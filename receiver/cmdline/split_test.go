package cmdline

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

type splitCase struct {
	name    string
	in      string
	want    []string
	wantErr error
}

var splitCases = []splitCase{
	// Blank input.
	{name: "empty", in: "", want: []string{}},
	{name: "only blanks", in: " \t\n ", want: []string{}},
	{name: "only line continuation", in: "\\\n", want: []string{}},

	// Separators.
	{name: "git receive-pack", in: "git-receive-pack '/myapp.git'", want: []string{"git-receive-pack", "/myapp.git"}},
	{name: "run with quoted arg", in: `run myapp manage.py "a b"`, want: []string{"run", "myapp", "manage.py", "a b"}},
	{name: "runs of blanks", in: "  a \t b\n\nc  ", want: []string{"a", "b", "c"}},
	{name: "carriage return is ordinary", in: "a\rb", want: []string{"a\rb"}},
	{name: "utf-8 word", in: "héllo wörld", want: []string{"héllo", "wörld"}},

	// No expansion of any kind.
	{name: "no variable expansion", in: "echo $HOME", want: []string{"echo", "$HOME"}},
	{name: "no braced variable", in: "echo ${HOME}", want: []string{"echo", "${HOME}"}},
	{name: "no glob", in: "ls *.go ?x [ab]", want: []string{"ls", "*.go", "?x", "[ab]"}},
	{name: "no tilde", in: "cd ~ ~root/x", want: []string{"cd", "~", "~root/x"}},
	{name: "no command substitution", in: "echo $(id) `id`", want: []string{"echo", "$(id)", "`id`"}},
	{name: "operators are word characters", in: "a;b c|d e&&f g>h <i", want: []string{"a;b", "c|d", "e&&f", "g>h", "<i"}},
	{name: "hash is not a comment", in: "a #b", want: []string{"a", "#b"}},

	// Backslash outside quotes.
	{name: "escaped space", in: `a\ b`, want: []string{"a b"}},
	{name: "escaped backslash", in: `a\\b`, want: []string{`a\b`}},
	{name: "escaped quote chars", in: `\'\"`, want: []string{`'"`}},
	{name: "escaped letter", in: `\n`, want: []string{"n"}},
	{name: "line continuation joins", in: "ab\\\ncd", want: []string{"abcd"}},
	{name: "line continuation between words", in: "a \\\n b", want: []string{"a", "b"}},
	{name: "trailing backslash", in: `abc\`, wantErr: ErrTrailingBackslash},

	// Single quotes.
	{name: "single quoted everything literal", in: `'a\b"$c'`, want: []string{`a\b"$c`}},
	{name: "single quoted newline", in: "'a\nb'", want: []string{"a\nb"}},
	{name: "quote inside single quotes", in: `'it'\''s'`, want: []string{"it's"}},
	{name: "empty single quotes", in: "a '' b", want: []string{"a", "", "b"}},
	{name: "unterminated single quote", in: "echo 'abc", wantErr: ErrUnterminatedSingleQuote},
	{name: "lone single quote", in: "'", wantErr: ErrUnterminatedSingleQuote},

	// Double quotes.
	{name: "escaped double quote", in: `"a\"b"`, want: []string{`a"b`}},
	{name: "backslash n stays", in: `"a\nb"`, want: []string{`a\nb`}},
	{name: "double quoted escapes", in: `"\\ \$ \` + "`" + `"`, want: []string{`\ $ ` + "`"}},
	{name: "double quoted line continuation", in: "\"a\\\nb\"", want: []string{"ab"}},
	{name: "double quoted keeps dollar", in: `"$HOME"`, want: []string{"$HOME"}},
	{name: "single quote inside double", in: `"it's"`, want: []string{"it's"}},
	{name: "empty double quotes", in: `a "" b`, want: []string{"a", "", "b"}},
	{name: "empty double quotes alone", in: `""`, want: []string{""}},
	{name: "unterminated double quote", in: `say "hi`, wantErr: ErrUnterminatedDoubleQuote},
	{name: "backslash before end of double quote", in: `"abc\"`, wantErr: ErrUnterminatedDoubleQuote},
	{name: "lone backslash in double quote", in: `"\`, wantErr: ErrUnterminatedDoubleQuote},

	// Mixed quoting forms one word.
	{name: "adjacent quoting", in: `a"b"'c'`, want: []string{"abc"}},
	{name: "adjacent empty quotes", in: `a''""b`, want: []string{"ab"}},
	{name: "escaped space next to quotes", in: `'a'\ "b"`, want: []string{"a b"}},

	// Rejected input.
	{name: "nul byte", in: "a\x00b", wantErr: ErrNULByte},
	{name: "nul byte inside quotes", in: "'a\x00b'", wantErr: ErrNULByte},
	{name: "invalid utf-8", in: "a \xff", wantErr: ErrInvalidUTF8},
	{name: "too long", in: strings.Repeat("a", MaxLen+1), wantErr: ErrTooLong},
	{name: "exactly max length", in: strings.Repeat("a", MaxLen), want: []string{strings.Repeat("a", MaxLen)}},
}

func TestSplit(t *testing.T) {
	for _, tc := range splitCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Split(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Split(%q) error = %v, want %v", tc.in, err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("Split(%q) = %q alongside an error, want nil", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Split(%q) unexpected error: %v", tc.in, err)
			}
			if got == nil || !slices.Equal(got, tc.want) {
				t.Errorf("Split(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSplitErrorNamesOffset(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{in: "ab 'cd", want: "byte offset 3"},
		{in: `ab "cd`, want: "byte offset 3"},
		{in: `abc\`, want: "byte offset 3"},
		{in: "ab\x00", want: "byte offset 2"},
		{in: "a\xffb", want: "byte offset 1"},
	}
	for _, tc := range tests {
		_, err := Split(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Split(%q) error = %v, want it to mention %q", tc.in, err, tc.want)
		}
	}
}

func TestQuote(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{in: "", want: "''"},
		{in: "myapp", want: "myapp"},
		{in: "a@b%c+d=e:f,g./h_i-J9", want: "a@b%c+d=e:f,g./h_i-J9"},
		{in: "a b", want: "'a b'"},
		{in: "it's", want: `'it'\''s'`},
		{in: "$HOME", want: "'$HOME'"},
		{in: "~", want: "'~'"},
		{in: `a\b`, want: `'a\b'`},
		{in: "a\nb", want: "'a\nb'"},
		{in: "héllo", want: "'héllo'"},
	}
	for _, tc := range tests {
		got := Quote(tc.in)
		if got != tc.want {
			t.Errorf("Quote(%q) = %q, want %q", tc.in, got, tc.want)
		}
		back, err := Split(got)
		if err != nil || len(back) != 1 || back[0] != tc.in {
			t.Errorf("Split(Quote(%q)) = %q, %v; want the original word back", tc.in, back, err)
		}
	}
}
