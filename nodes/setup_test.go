package nodes

import (
	"bytes"
	"context"
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

// Setup is idempotent: a node whose connection drops during it is set up
// once more, on a new connection; a second drop fails that node only.
func TestSetupRetriesADroppedConnectionOnce(t *testing.T) {
	ff, nodes := newFakeFleet(t, "a", "b", "c")
	ff.script("a", "setup", step{dropped: true})
	ff.script("c", "setup", step{dropped: true}, step{dropped: true})
	var out bytes.Buffer
	err := ff.fleet.Setup(context.Background(), nodes, nil, &out)
	if err == nil || !strings.Contains(err.Error(), "node c: setup failed: "+errDropped.Error()) || strings.Contains(err.Error(), "node a") {
		t.Fatalf("Setup = %v, want node c's failure only", err)
	}
	count := func(node string) (n int) {
		for _, call := range ff.callsTo(node) {
			if strings.HasPrefix(call, "setup") {
				n++
			}
		}
		return n
	}
	if count("a") != 2 || count("b") != 1 || count("c") != 2 {
		t.Errorf("setup calls: a %d, b %d, c %d; want 2, 1, 2", count("a"), count("b"), count("c"))
	}
	if !strings.Contains(out.String(), "a        "+errDropped.Error()+"; setting up again") {
		t.Errorf("output lacks the retry:\n%s", out.String())
	}
}
