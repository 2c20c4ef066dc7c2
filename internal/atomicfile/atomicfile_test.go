package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// onlyEntry fails unless dir holds exactly name: a temporary file left
// behind is what a failed or racing write must never do.
func onlyEntry(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Fatalf("%s holds %q, want only %q", dir, names, name)
	}
}

func TestWriteModes(t *testing.T) {
	// The umask must not matter: these modes are security properties.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	tests := []struct {
		name     string
		mode     fs.FileMode
		existing fs.FileMode // 0: no file before
	}{
		{"new private", 0o600, 0},
		{"new world-readable past umask", 0o644, 0},
		{"new executable hook", 0o755, 0},
		{"new group-readable", 0o640, 0},
		{"replace loosens nothing it should not", 0o600, 0o666},
		{"replace tightens to read-only", 0o400, 0o644},
		{"replace widens", 0o644, 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.json")
			if tt.existing != 0 {
				if err := os.WriteFile(path, []byte("old contents, longer than the new"), tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			if err := Write(path, []byte("new"), tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != "new" {
				t.Fatalf("contents %q, %v; want %q", got, err, "new")
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tt.mode {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tt.mode)
			}
			onlyEntry(t, dir, "f.json")
		})
	}
}

func TestWriteOwner(t *testing.T) {
	me, myGroup := os.Getuid(), os.Getgid()
	root := me == 0
	tests := []struct {
		name             string
		uid, gid         int
		wantUID, wantGID int
		needsRoot        bool
	}{
		{"keep both", KeepOwner, KeepOwner, me, myGroup, false},
		{"own ids", me, myGroup, me, myGroup, false},
		{"keep uid, own gid", KeepOwner, myGroup, me, myGroup, false},
		{"another user and group", 4242, 4243, 4242, 4243, true},
		{"group only, as the bootstrap file", KeepOwner, 4243, me, 4243, true},
		{"user only", 4242, KeepOwner, 4242, myGroup, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needsRoot && !root {
				t.Skip("giving a file to another user needs root")
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "env")
			if err := WriteOwned(path, []byte("K=V\n"), 0o640, tt.uid, tt.gid); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			sys := st.Sys().(*syscall.Stat_t)
			if int(sys.Uid) != tt.wantUID || int(sys.Gid) != tt.wantGID {
				t.Errorf("owner %d:%d, want %d:%d", sys.Uid, sys.Gid, tt.wantUID, tt.wantGID)
			}
			// chown clears set-id bits and must not undo the mode.
			if st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640", st.Mode().Perm())
			}
			onlyEntry(t, dir, "env")
		})
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	tests := []struct {
		name string
		// setup makes dir's contents and returns the path to write.
		setup func(t *testing.T, dir string) string
		// left is what dir must hold afterwards, and nothing else.
		left string
	}{
		{"target is a directory", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "target")
			if err := os.MkdirAll(filepath.Join(p, "inside"), 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}, "target"},
		{"parent is a file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "plain")
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(p, "target")
		}, "plain"},
		{"parent is missing", func(t *testing.T, dir string) string {
			if err := os.WriteFile(filepath.Join(dir, "bystander"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "missing", "target")
		}, "bystander"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tt.setup(t, dir)
			// The directory case fails only at the rename: after the
			// temporary file was made, written and synced.
			if err := Write(path, []byte("new"), 0o600); err == nil {
				t.Fatal("write succeeded")
			} else if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			onlyEntry(t, dir, tt.left)
		})
	}
}

func TestConcurrentWritersNeverShowAPartialFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hosts.json")
	const writers, rounds, size = 4, 25, 64 << 10
	contents := make([][]byte, writers)
	for i := range contents {
		// Distinct, large (more than one write's page), and each a
		// single repeated byte: any mix of two shows as a wrong byte.
		contents[i] = bytes.Repeat([]byte{byte('a' + i)}, size)
	}
	if err := Write(path, contents[0], 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		reads := 0
		for {
			select {
			case <-stop:
				if reads == 0 {
					readerDone <- errors.New("the reader never read")
					return
				}
				readerDone <- nil
				return
			default:
			}
			got, err := os.ReadFile(path)
			if err != nil {
				readerDone <- fmt.Errorf("read %d: %w", reads, err)
				return
			}
			if len(got) != size || !bytes.Equal(got, bytes.Repeat(got[:1], size)) {
				readerDone <- fmt.Errorf("read %d saw a partial or mixed file (%d bytes)", reads, len(got))
				return
			}
			reads++
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if err := Write(path, contents[w], 0o600); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
	onlyEntry(t, dir, "hosts.json")
}

// The temporary name is what keeps the emperor (*.ini) and nginx (*.conf)
// from loading a half-written file, and what the agent's destroy matches to
// clear leftovers.
func TestTempNameIsIgnoredByEmperorAndNginx(t *testing.T) {
	dir := t.TempDir()
	leftover := regexp.MustCompile(`^\.(app\.v4\.ini|app\.conf|f)\.tmp-[0-9]+$`)
	for _, base := range []string{"app.v4.ini", "app.conf", "f"} {
		f, err := os.CreateTemp(dir, tempPattern(filepath.Join(dir, base)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		name := filepath.Base(f.Name())
		if strings.HasSuffix(name, ".ini") || strings.HasSuffix(name, ".conf") {
			t.Errorf("%s: temporary name %q would be loaded", base, name)
		}
		if !leftover.MatchString(name) {
			t.Errorf("%s: temporary name %q is not .BASE.tmp-DIGITS", base, name)
		}
	}
}

// Create writes a file that is not there, and refuses one that is, leaving
// it as it was and no temporary file behind; of racing creators one wins.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := Create(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Create(path, []byte("second"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create: %v, want fs.ErrExist", err)
	}
	onlyEntry(t, dir, "key")
	if got, _ := os.ReadFile(path); string(got) != "first" {
		t.Fatalf("contents %q", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}

	race := filepath.Join(t.TempDir(), "raced")
	var wg sync.WaitGroup
	var wins atomic.Int32
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if Create(race, []byte{byte('a' + i)}, 0o600) == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d creators won, want 1", wins.Load())
	}
	onlyEntry(t, filepath.Dir(race), "raced")
}
