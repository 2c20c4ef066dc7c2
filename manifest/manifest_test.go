package manifest

import (
	"strings"
	"testing"
)

func TestWithoutBlobsKeepsTheHash(t *testing.T) {
	m := Manifest{
		{Path: "a.py", Mode: ModeFile, Size: 1, SHA256: strings.Repeat("a", 64), Blob: "b1"},
		{Path: "l", Mode: ModeSymlink, Size: 4, SHA256: strings.Repeat("b", 64), Target: "a.py"},
	}
	w := m.WithoutBlobs()
	if w[0].Blob != "" || m[0].Blob != "b1" {
		t.Fatalf("WithoutBlobs = %+v, original %+v: want a copy without blobs", w, m)
	}
	if w.Hash() != m.Hash() || w.TotalSize() != 5 {
		t.Fatalf("hash or size changed: %s %s %d", w.Hash(), m.Hash(), w.TotalSize())
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNeeded(t *testing.T) {
	h := func(c string) string { return strings.Repeat(c, 64) }
	have := Manifest{{Path: "a", Mode: ModeFile, SHA256: h("a")}, {Path: "l", Mode: ModeSymlink, SHA256: h("c"), Target: "a"}}
	want := Manifest{{Path: "a", Mode: ModeFile, SHA256: h("a")}, {Path: "b", Mode: ModeExec, SHA256: h("b")},
		{Path: "b2", Mode: ModeFile, SHA256: h("b")}, {Path: "c", Mode: ModeFile, SHA256: h("c")}}
	if got := strings.Join(Needed(have, want), ","); got != h("b")+","+h("c") {
		t.Fatalf("Needed = %s", got)
	}
}
