package nodes

import (
	"bytes"
	"sync"
	"testing"
)

func TestLinePrefixer(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	a := &linePrefixer{mu: &mu, out: &out, prefix: "web1 "}
	b := &linePrefixer{mu: &mu, out: &out, prefix: "web2 "}
	a.Write([]byte("one, half"))
	b.Write([]byte("two\n"))
	a.Write([]byte(" done\nthree\nno newline"))
	a.Flush()
	b.Flush()
	want := "web2 two\nweb1 one, half done\nweb1 three\nweb1 no newline\n"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}
