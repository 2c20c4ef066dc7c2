package nodes

import (
	"strings"
	"testing"
)

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{line: func(l string) { got = append(got, l) }}
	w.Write([]byte("one, half"))
	w.Write([]byte(" done\nthree\n\nno newline"))
	w.Flush()
	want := "one, half done|three||no newline"
	if strings.Join(got, "|") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, "|"), want)
	}
}
