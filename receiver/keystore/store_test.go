package keystore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func newTestStore(t *testing.T) *Store {
	t.Helper()
	return Open(filepath.Join(t.TempDir(), "authorized_keys"))
}

func TestStoreMissingFileIsEmpty(t *testing.T) {
	s := newTestStore(t)
	keys, err := s.List()
	if err != nil || len(keys) != 0 {
		t.Fatalf("List() on a missing file = %v, %v; want no keys and no error", keys, err)
	}
	_, found, err := s.Lookup(newTestKey(t, kindED25519))
	if err != nil || found {
		t.Fatalf("Lookup() on a missing file = %v, %v; want not found", found, err)
	}
	if _, err := os.Stat(s.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reading created the store file (stat: %v)", err)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s := newTestStore(t)
	alice := Key{Name: "alice", Role: RoleAdmin, PublicKey: newTestKey(t, kindED25519)}
	bob := Key{Name: "bob", Role: RoleDeployer, Apps: []string{"myapp", "blog"}, PublicKey: newTestKey(t, kindECDSA384)}
	carol := Key{Name: "carol@ci", Role: RoleDeployer, Apps: []string{"shop"}, PublicKey: newTestKey(t, kindRSA2048)}
	for _, k := range []Key{alice, bob, carol} {
		if err := s.Add(k); err != nil {
			t.Fatalf("Add(%s): %v", k.Name, err)
		}
	}

	keys, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	assertSameKeys(t, keys, []Key{alice, bob, carol})

	got, found, err := s.Lookup(bob.PublicKey)
	if err != nil || !found {
		t.Fatalf("Lookup(bob) = %v, %v", found, err)
	}
	assertSameKeys(t, []Key{got}, []Key{bob})
	if _, found, _ := s.Lookup(newTestKey(t, kindED25519)); found {
		t.Error("Lookup found a key that was never added")
	}

	removed, err := s.Remove("bob")
	if err != nil {
		t.Fatalf("Remove(bob): %v", err)
	}
	assertSameKeys(t, []Key{removed}, []Key{bob})
	removed, err = s.Remove(alice.Fingerprint())
	if err != nil {
		t.Fatalf("Remove(alice's fingerprint): %v", err)
	}
	assertSameKeys(t, []Key{removed}, []Key{alice})

	keys, err = s.List()
	if err != nil {
		t.Fatal(err)
	}
	assertSameKeys(t, keys, []Key{carol})
	if _, found, _ := s.Lookup(bob.PublicKey); found {
		t.Error("Lookup still finds a removed key")
	}
}

func TestStoreNewFileHasHeaderAndMode0600(t *testing.T) {
	s := newTestStore(t)
	if err := s.Add(Key{Name: "alice", Role: RoleAdmin, PublicKey: newTestKey(t, kindED25519)}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), newFileHeader) {
		t.Errorf("new store file does not start with the format header:\n%s", data)
	}
	assertMode0600(t, s.path)
	assertNoTempFiles(t, s.path)
}

func TestStoreAddKeepsMode0600OverLooserFile(t *testing.T) {
	s := newTestStore(t)
	if err := os.WriteFile(s.path, []byte("# keys\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Key{Name: "alice", Role: RoleAdmin, PublicKey: newTestKey(t, kindED25519)}); err != nil {
		t.Fatal(err)
	}
	assertMode0600(t, s.path)
}

func TestStoreAddPreservesHandEditedFile(t *testing.T) {
	s := newTestStore(t)
	alice := newTestKey(t, kindED25519)
	handEdited := "# Production keys. Ask ops before adding one.\n" +
		"\n" +
		"# admins\n" +
		`role="admin" ` + authorizedLine(alice, "alice") + "\n" +
		"\n" +
		"# deployers below\n"
	if err := os.WriteFile(s.path, []byte(handEdited), 0o600); err != nil {
		t.Fatal(err)
	}
	bob := Key{Name: "bob", Role: RoleDeployer, Apps: []string{"blog"}, PublicKey: newTestKey(t, kindED25519)}
	if err := s.Add(bob); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	want := handEdited + `role="deployer",apps="blog" ` + authorizedLine(bob.PublicKey, "bob") + "\n"
	if string(data) != want {
		t.Errorf("store after Add =\n%s\nwant\n%s", data, want)
	}

	if _, err := s.Remove("bob"); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(s.path); string(data) != handEdited {
		t.Errorf("store after Remove =\n%s\nwant the hand-edited file back:\n%s", data, handEdited)
	}
}

func TestStoreAddRejects(t *testing.T) {
	aliceKey := newTestKey(t, kindED25519)
	tests := []struct {
		name    string
		key     Key
		wantErr error
		want    string
	}{
		{name: "duplicate name", key: Key{Name: "alice", Role: RoleAdmin, PublicKey: newTestKey(t, kindED25519)},
			wantErr: ErrDuplicate, want: `a key named "alice" already exists (SHA256:`},
		{name: "duplicate key", key: Key{Name: "alice2", Role: RoleDeployer, Apps: []string{"x"}, PublicKey: aliceKey},
			wantErr: ErrDuplicate, want: `already in the store as "alice"`},
		{name: "invalid key entry", key: Key{Name: "bob", Role: RoleAdmin, Apps: []string{"x"}, PublicKey: newTestKey(t, kindED25519)},
			wantErr: ErrInvalidRole, want: "admin"},
		{name: "invalid name", key: Key{Name: "bob smith", Role: RoleAdmin, PublicKey: newTestKey(t, kindED25519)},
			wantErr: ErrInvalidName, want: `"bob smith"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t)
			if err := s.Add(Key{Name: "alice", Role: RoleAdmin, PublicKey: aliceKey}); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(s.path)
			err := s.Add(tc.key)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Errorf("Add error = %v, want %v containing %q", err, tc.wantErr, tc.want)
			}
			if after, _ := os.ReadFile(s.path); string(after) != string(before) {
				t.Error("a rejected Add changed the store file")
			}
		})
	}
}

func TestStoreRemoveNotFound(t *testing.T) {
	s := newTestStore(t)
	if err := s.Add(Key{Name: "alice", Role: RoleAdmin, PublicKey: newTestKey(t, kindED25519)}); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"bob", "ALICE", "ali", "SHA256:nope", newTestKey(t, kindED25519).Type()} {
		_, err := s.Remove(target)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), fmt.Sprintf("%q", target)) {
			t.Errorf("Remove(%q) error = %v, want ErrNotFound naming it", target, err)
		}
	}
}

func TestStoreMalformedFileFailsClosed(t *testing.T) {
	s := newTestStore(t)
	pub := newTestKey(t, kindED25519)
	data := `role="admin" ` + authorizedLine(pub, "alice") + "\nthis line is broken\n"
	if err := os.WriteFile(s.path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, found, err := s.Lookup(pub)
	if found || !errors.Is(err, ErrMalformedStore) || !strings.Contains(err.Error(), s.path+":2:") {
		t.Errorf("Lookup on a malformed store = %v, %v; want not found and an error naming %s:2", found, err, s.path)
	}
	if err := s.Add(Key{Name: "bob", Role: RoleAdmin, PublicKey: newTestKey(t, kindED25519)}); !errors.Is(err, ErrMalformedStore) {
		t.Errorf("Add on a malformed store error = %v, want ErrMalformedStore", err)
	}
}

func TestStoreAddDoesNotAliasCallerApps(t *testing.T) {
	s := newTestStore(t)
	apps := []string{"myapp"}
	if err := s.Add(Key{Name: "bob", Role: RoleDeployer, Apps: apps, PublicKey: newTestKey(t, kindED25519)}); err != nil {
		t.Fatal(err)
	}
	apps[0] = "changed"
	keys, _ := s.List()
	if len(keys) != 1 || keys[0].Apps[0] != "myapp" {
		t.Errorf("List() = %+v after the caller changed its slice", keys)
	}
}

func TestStoreConcurrentAddsLoseNothing(t *testing.T) {
	const writers = 12
	path := filepath.Join(t.TempDir(), "authorized_keys")
	keys := make([]Key, writers)
	for i := range keys {
		keys[i] = Key{Name: fmt.Sprintf("user%d", i), Role: RoleDeployer, Apps: []string{"myapp"}, PublicKey: newTestKey(t, kindED25519)}
	}

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A Store per goroutine, like separate CLI and daemon
			// processes: only the file lock can serialise them.
			errs <- Open(path).Add(k)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Add: %v", err)
		}
	}

	got, err := Open(path).List()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers {
		t.Fatalf("List() has %d keys after %d concurrent Adds", len(got), writers)
	}
	for _, k := range keys {
		if _, found, err := Open(path).Lookup(k.PublicKey); !found || err != nil {
			t.Errorf("key %s lost: found=%v err=%v", k.Name, found, err)
		}
	}
	assertNoTempFiles(t, path)
}

func assertMode0600(t *testing.T, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("%s has mode %o, want 600", path, mode)
	}
}

// assertNoTempFiles checks that atomic writes cleaned up after themselves:
// only the store and its lock file may remain.
func assertNoTempFiles(t *testing.T, path string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if name := e.Name(); name != filepath.Base(path) && name != filepath.Base(path)+".lock" {
			t.Errorf("unexpected file %s left next to the store", name)
		}
	}
}
