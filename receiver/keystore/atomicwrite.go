package keystore

import (
	"fmt"
	"os"
	"path/filepath"
)

// storeFileMode keeps the store private: it decides who may deploy.
const storeFileMode = 0o600

// writeFileAtomic replaces path with data so that readers see either the old
// or the new contents, never a partial file, even after a crash.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// The temporary file must be in the same directory: rename is only
	// atomic within one file system.
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	// CreateTemp already uses 0600, but say so explicitly: the mode is a
	// security property, not an accident of the library.
	if err := tmp.Chmod(storeFileMode); err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	// Sync the directory so the rename itself survives a crash.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
