// Package pysupport is the Python side of an app's environment that
// gitreceive provides on every node: a sitecustomize module that makes
// every Python process of an app see the app (its lib/python site
// directories, its silvercustomize), and the silversupport package Silver
// Lining apps import. The node agent installs it into Dir, root-owned and
// read-only to apps, and puts Dir on the app's PYTHONPATH.
package pysupport

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
)

// Dir is where the agent installs the files on a node.
const Dir = "/usr/local/lib/gitreceive/python"

// AppDirEnv names the variable sitecustomize reads the release from.
const AppDirEnv = "SILVER_APP_DIR"

//go:embed python
var files embed.FS

// Install writes the files into dir, each only when its content differs
// (so a start costs a few reads), directories 0755 and files 0644.
// dir and its parents must not be writable by apps: the agent runs as root.
func Install(dir string) error {
	root, err := fs.Sub(files, "python")
	if err != nil {
		return err
	}
	return fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return ensureDir(dst)
		}
		want, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, want) {
			return nil
		}
		if err := atomicfile.Write(dst, want, 0o644); err != nil {
			return fmt.Errorf("python support file %s: %w", dst, err)
		}
		return nil
	})
}

// ensureDir makes dir (0755) unless it is a directory already; a symlink
// or a file in its place is an error, never followed.
func ensureDir(dir string) error {
	info, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return os.Chmod(dir, 0o755)
	case err != nil:
		return err
	case !info.IsDir():
		return fmt.Errorf("%s is not a directory (%v); remove it", dir, info.Mode().Type())
	}
	return nil
}
