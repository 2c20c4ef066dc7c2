package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// storeFileMode keeps the store private: it decides who may deploy.
const storeFileMode = 0o600

// Store is the key store file at one path. It holds no state besides the
// path: every call reads the file, so the CLI, the daemon and hand edits
// always see each other's changes.
type Store struct {
	path string
}

// Open returns the store kept in the file at path. It does no I/O; a
// missing file is an empty store.
func Open(path string) *Store {
	return &Store{path: path}
}

// List returns every key in file order.
func (s *Store) List() ([]Key, error) {
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	return f.keys(), nil
}

// Lookup returns the entry whose public key is exactly pub.
func (s *Store) Lookup(pub ssh.PublicKey) (Key, bool, error) {
	if pub == nil {
		return Key{}, false, nil
	}
	keys, err := s.List()
	if err != nil {
		return Key{}, false, err
	}
	want := pub.Marshal()
	for _, k := range keys {
		if bytes.Equal(k.PublicKey.Marshal(), want) {
			return k, true, nil
		}
	}
	return Key{}, false, nil
}

// Add validates k and appends it to the store. It fails with ErrDuplicate,
// naming the existing entry, if the name or the key is already present.
func (s *Store) Add(k Key) error {
	k.Apps = slices.Clone(k.Apps) // the store must not alias the caller's slice
	if err := k.validate(); err != nil {
		return err
	}
	return s.update(func(f *storeFile) error {
		for _, existing := range f.keys() {
			if existing.Name == k.Name {
				return errorf(ErrDuplicate, "a key named %q already exists (%s); choose another name or remove that key first", k.Name, existing.Fingerprint())
			}
			if bytes.Equal(existing.PublicKey.Marshal(), k.PublicKey.Marshal()) {
				return errorf(ErrDuplicate, "this key (%s) is already in the store as %q; remove that entry first to change its name or permissions", k.Fingerprint(), existing.Name)
			}
		}
		if len(f.lines) == 0 {
			f.lines = headerLines()
		}
		f.lines = append(f.lines, storeLine{key: &k})
		return nil
	})
}

// Remove deletes the key whose name or "SHA256:..." fingerprint is
// nameOrFingerprint and returns it.
func (s *Store) Remove(nameOrFingerprint string) (Key, error) {
	var removed Key
	err := s.update(func(f *storeFile) error {
		i := slices.IndexFunc(f.lines, func(l storeLine) bool {
			return l.key != nil && matches(*l.key, nameOrFingerprint)
		})
		if i < 0 {
			return errorf(ErrNotFound, "no key has the name or fingerprint %q; list the keys to see what is there", nameOrFingerprint)
		}
		removed = *f.lines[i].key
		f.lines = slices.Delete(f.lines, i, i+1)
		return nil
	})
	return removed, err
}

// matches reports whether k is the key named by nameOrFingerprint. Names
// cannot contain ':', so a fingerprint can never be mistaken for a name.
func matches(k Key, nameOrFingerprint string) bool {
	if strings.HasPrefix(nameOrFingerprint, "SHA256:") {
		return k.Fingerprint() == nameOrFingerprint
	}
	return k.Name == nameOrFingerprint
}

// read parses the store file; a missing file is an empty store.
func (s *Store) read() (*storeFile, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &storeFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key store: %w", err)
	}
	return parseStoreFile(s.path, data)
}

// update applies change to the store file under the store's lock, so that
// concurrent read-modify-write cycles from the CLI and the daemon cannot
// lose each other's edits, then replaces the file atomically.
func (s *Store) update(change func(*storeFile) error) error {
	// The first key may be added before the daemon ever made the data dir.
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("creating the key store's directory: %w", err)
	}
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()

	f, err := s.read()
	if err != nil {
		return err
	}
	if err := change(f); err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, f.render(), storeFileMode); err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	return nil
}

// headerLines explains the format at the top of a new store file.
func headerLines() []storeLine {
	var lines []storeLine
	for _, text := range strings.Split(strings.TrimSuffix(newFileHeader, "\n"), "\n") {
		lines = append(lines, storeLine{text: text})
	}
	return lines
}
