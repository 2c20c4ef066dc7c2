package pthfix

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFixLargeTree is a sanity check that the suffix index keeps a big tree
// cheap: 50,000 directories, half of them named "src" so that every lookup
// of a .../src path has 25,000 candidates, and a 1,000-line .pth. It takes
// milliseconds; the 10 s limit only catches an accidental quadratic scan.
func TestFixLargeTree(t *testing.T) {
	const packages = 25000
	paths := make([]string, 0, 2*packages)
	for i := range packages {
		paths = append(paths, fmt.Sprintf("pkgs/p%05d/src", i), fmt.Sprintf("pkgs/p%05d/src/m%05d", i, i))
	}
	var in, want strings.Builder
	for i := range 1000 {
		p := i * 23 % packages
		if i%2 == 0 {
			fmt.Fprintf(&in, "/home/alice/app/pkgs/p%05d/src\n", p)
			fmt.Fprintf(&want, "../../pkgs/p%05d/src\n", p)
		} else {
			fmt.Fprintf(&in, "/home/alice/app/pkgs/p%05d/src/m%05d\n", p, p)
			fmt.Fprintf(&want, "../../pkgs/p%05d/src/m%05d\n", p, p)
		}
	}

	start := time.Now()
	dirs := NewDirs(paths)
	got, rewrites, err := Fix(pthFile, []byte(in.String()), dirs)
	elapsed := time.Since(start)

	if err != nil {
		t.Fatalf("Fix: %v", err)
	}
	if len(rewrites) != 1000 || string(got) != want.String() {
		t.Errorf("got %d rewrites; output matches: %v", len(rewrites), string(got) == want.String())
	}
	if elapsed > 10*time.Second {
		t.Errorf("indexing 50,000 directories and fixing 1,000 lines took %v, want well under a second", elapsed)
	}
	t.Logf("NewDirs + Fix took %v", elapsed)
}
