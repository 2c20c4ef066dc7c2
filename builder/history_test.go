package builder

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestHistoryDropLast(t *testing.T) {
	h := History{Dir: t.TempDir()}
	for n := 1; n <= 2; n++ {
		if err := h.Append("app", "production", Record{Number: n}, Manifest{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.DropLast("app", "production", 1); err == nil {
		t.Fatal("DropLast of a release that is not the newest succeeded")
	}
	if err := h.DropLast("app", "production", 2); err != nil {
		t.Fatal(err)
	}
	last, _, ok, err := h.Last("app", "production")
	if err != nil || !ok || last.Number != 1 {
		t.Fatalf("after dropping v2 the newest is %+v (ok %v, %v), want v1", last, ok, err)
	}
	if _, err := os.Stat(h.manifestPath("app", "production", 2)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("v2's manifest: %v", err)
	}
	// The next release takes the dropped number again.
	if err := h.Append("app", "production", Record{Number: 2}, Manifest{}); err != nil {
		t.Fatal(err)
	}
	if recs, err := h.List("app", "production"); err != nil || len(recs) != 2 || recs[1].Number != 2 {
		t.Fatalf("history after v2 again: %+v %v", recs, err)
	}

	// Dropping the only release leaves no history.
	if err := h.Append("app", "branch-x", Record{Number: 1}, Manifest{}); err != nil {
		t.Fatal(err)
	}
	if err := h.DropLast("app", "branch-x", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.dir("app", "branch-x"), "history.jsonl")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("history of an instance without releases: %v", err)
	}
	if _, _, ok, err := h.Last("app", "branch-x"); ok || err != nil {
		t.Fatalf("Last of an instance without releases: ok %v, %v", ok, err)
	}
}
