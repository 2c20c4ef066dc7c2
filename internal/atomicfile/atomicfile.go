// Package atomicfile is the one way gitreceive replaces a file: readers see
// the old contents or the new ones, never a mix, and once Write returns the
// new contents survive a crash.
//
// It sits below every other package (it imports only the standard library)
// so that the receiver, the builder, the node agent and the services can all
// use it without bending the dependency direction.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeepOwner as a uid or gid leaves that id as the writing process's (root
// on a node), as os.Chown's -1 does.
const KeepOwner = -1

// Write replaces path with data, mode set exactly (the umask does not
// apply: modes here are security properties).
func Write(path string, data []byte, mode fs.FileMode) error {
	return WriteOwned(path, data, mode, KeepOwner, KeepOwner)
}

// WriteOwned replaces path with data owned by uid:gid (KeepOwner: the
// writer's id). The temporary file is in path's directory, because rename
// is atomic only within one file system, and has a unique name, so two
// writers never share one. That name starts with a dot and ends in digits:
// the uWSGI emperor (*.ini) and nginx (*.conf) never load it, and the
// agent's destroy finds leftovers by it (`.NAME.tmp-N`). Mode and owner are
// set on the descriptor before any data is written, so the data is never
// readable by anyone the final mode shuts out. On any failure the temporary
// file is removed and path is left as it was.
func WriteOwned(path string, data []byte, mode fs.FileMode, uid, gid int) error {
	if err := write(path, data, mode, uid, gid, os.Rename); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Create writes path with data, as Write does, unless path exists: then it
// returns an error that is fs.ErrExist and leaves path as it is. The file is
// linked into place, never renamed over, so of two writers racing to create
// it exactly one wins and the other reads the winner's contents.
func Create(path string, data []byte, mode fs.FileMode) error {
	link := func(tmp, path string) error {
		err := os.Link(tmp, path)
		os.Remove(tmp) // the data lives on under path, if linked
		return err
	}
	if err := write(path, data, mode, KeepOwner, KeepOwner, link); err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	return nil
}

// write writes data to a temporary file beside path and puts it in place
// with place (a rename, or a link).
func write(path string, data []byte, mode fs.FileMode, uid, gid int, place func(tmp, path string) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPattern(path))
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close() // a second Close only reports ErrClosed
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if uid != KeepOwner || gid != KeepOwner {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil { // a short write is an error
		return err
	}
	// Without this, a crash after the rename can leave path empty: the
	// rename may reach the disk before the data does.
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := place(tmp, path); err != nil {
		return err
	}
	// The rename (or link) is a change to the directory; only syncing it makes the
	// new name, and not the old file, what a crash leaves behind.
	return syncDir(dir)
}

// tempPattern is the os.CreateTemp pattern for path's temporary file:
// ".BASE.tmp-" plus the random digits CreateTemp puts for the star.
func tempPattern(path string) string {
	return "." + filepath.Base(path) + ".tmp-*"
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
