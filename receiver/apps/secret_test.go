package apps

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestInstanceSecret(t *testing.T) {
	dir := t.TempDir()
	a := &Apps{cfg: Config{DataDir: dir}}
	// Two first deploys at once agree on the key.
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if got[i], err = a.instanceSecret("blog", "production"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, g := range got[1:] {
		if g != got[0] || len(g) != 64 {
			t.Fatalf("secrets %q", got)
		}
	}
	other, _ := a.instanceSecret("blog", "branch-x")
	shop, _ := a.instanceSecret("blo", "gproduction")
	if other == got[0] || shop == got[0] {
		t.Error("two instances share a secret")
	}
	fi, err := os.Stat(filepath.Join(dir, instanceSecretKeyName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	if err := os.WriteFile(filepath.Join(dir, instanceSecretKeyName), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.instanceSecret("blog", "production"); err == nil {
		t.Error("a damaged key was used")
	}
}
