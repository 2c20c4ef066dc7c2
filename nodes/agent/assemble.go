// Package agent is the node side of a deploy: it turns the files a node
// already has plus a stream of the contents it lacks into a new release
// directory, and verifies it against the release manifest before the node
// reports ready (DESIGN.md decision 5).
//
// Everything it reads comes over the wire and is checked as untrusted:
// paths, modes, symlink targets, and the tar stream, whose entries are
// named by content hash only and must hash to their names.
package agent

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gitreceive/gitreceive/manifest"
)

// maxEntries bounds the tar entries read from one stream.
const maxEntries = 1 << 20

// assemble builds dst from prev (the current release directory and its
// manifest; "" and nil for none) and contents, a tar stream of the needed
// contents, each a regular file named by its sha256. Unchanged contents are
// hard-linked from prev, so a one-file change costs one file. On any error
// dst is removed. dst must not exist.
func assemble(dst, prev string, prevManifest, want manifest.Manifest, contents io.Reader) (err error) {
	if err := want.Validate(); err != nil {
		return err
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return fmt.Errorf("creating release directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dst)
		}
	}()
	staging := filepath.Join(dst, ".incoming")
	if err := os.Mkdir(staging, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(staging)

	// Where each content can be linked from: the previous release first.
	source := map[string]content{}
	if prev != "" {
		for _, f := range prevManifest {
			if f.Mode != manifest.ModeSymlink && manifest.CheckRelPath(f.Path) == nil {
				source[f.SHA256] = content{path: filepath.Join(prev, filepath.FromSlash(f.Path)), mode: permOf(f.Mode)}
			}
		}
	}
	needed := map[string]bool{}
	for _, h := range manifest.Needed(prevManifest, want) {
		needed[h] = true
	}
	if err := receiveContents(staging, contents, needed, source); err != nil {
		return err
	}

	// Regular files first (their parent directories are plain directories
	// because no symlink exists yet), symlinks last.
	//
	// A hard link to a file whose content was already proven (hashed as it
	// arrived, or verified when the previous release was made) is proven by
	// being that same inode, which a successful link(2) guarantees: only
	// what was written anew is hashed again. That keeps a one-file change
	// from re-reading the whole app on every node.
	proven := map[string]bool{}
	dirs := map[string]bool{dst: true}
	for _, f := range want {
		if f.Mode == manifest.ModeSymlink {
			continue
		}
		linked, err := place(dst, f, source[f.SHA256], dirs)
		if err != nil {
			return err
		}
		proven[f.Path] = linked
	}
	for _, f := range want {
		if f.Mode != manifest.ModeSymlink {
			continue
		}
		p := filepath.Join(dst, filepath.FromSlash(f.Path))
		if err := mkdirs(filepath.Dir(p), dirs); err != nil {
			return err
		}
		if err := os.Symlink(f.Target, p); err != nil {
			return fmt.Errorf("creating symlink %s: %w", f.Path, err)
		}
	}
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	return verify(dst, want, proven)
}

// receiveContents stores each needed content from the tar stream in
// staging, checking name, type, size limits and hash, and records it in
// source. Anything not asked for is an error.
func receiveContents(staging string, contents io.Reader, needed map[string]bool, source map[string]content) error {
	if contents == nil {
		contents = strings.NewReader("")
	}
	tr := tar.NewReader(contents)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the release contents: %w", err)
		}
		if n >= maxEntries {
			return errors.New("the release contents have too many entries")
		}
		if hdr.Typeflag != tar.TypeReg || !manifest.IsSHA256(hdr.Name) || !needed[hdr.Name] {
			return fmt.Errorf("unexpected entry %q (type %c) in the release contents", hdr.Name, hdr.Typeflag)
		}
		delete(needed, hdr.Name)
		p := filepath.Join(staging, hdr.Name)
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(io.MultiWriter(fh, h), tr)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing content %s: %w", hdr.Name[:12], err)
		}
		if hex.EncodeToString(h.Sum(nil)) != hdr.Name {
			return fmt.Errorf("content %s arrived corrupted", hdr.Name[:12])
		}
		source[hdr.Name] = content{path: p, mode: 0o644}
	}
	if len(needed) > 0 {
		return fmt.Errorf("the release contents lack %d of the files this node needs", len(needed))
	}
	return nil
}

// content is where a content can be copied or linked from, and the mode
// that file has (a hard link shares its inode's mode).
type content struct {
	path string
	mode fs.FileMode
}

func permOf(mode string) fs.FileMode {
	if mode == manifest.ModeExec {
		return 0o755
	}
	return 0o644
}

// mkdirs is os.MkdirAll that remembers what exists in made: thousands of
// files share a few directories.
func mkdirs(dir string, made map[string]bool) error {
	if made[dir] {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	made[dir] = true
	return nil
}

// place puts f into dst: a hard link to src when the mode allows
// (reporting true), else a copy.
func place(dst string, f manifest.Entry, src content, dirs map[string]bool) (linked bool, err error) {
	if src.path == "" {
		return false, fmt.Errorf("no content for %s", f.Path)
	}
	p := filepath.Join(dst, filepath.FromSlash(f.Path))
	if err := mkdirs(filepath.Dir(p), dirs); err != nil {
		return false, err
	}
	mode := permOf(f.Mode)
	if src.mode == mode && os.Link(src.path, p) == nil {
		return true, nil
	}
	in, err := os.Open(src.path)
	if err != nil {
		return false, err
	}
	defer in.Close()
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return false, err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return false, err
	}
	if err := out.Close(); err != nil {
		return false, err
	}
	return false, os.Chmod(p, mode) // the umask must not decide the mode
}

// Verify checks that dir holds exactly the files of m, byte for byte.
func Verify(dir string, m manifest.Manifest) error { return verify(dir, m, nil) }

// verify is Verify that skips hashing the files in proven (mode, size and
// type are still checked).
func verify(dir string, m manifest.Manifest, proven map[string]bool) error {
	want := make(map[string]manifest.Entry, len(m))
	for _, f := range m {
		want[f.Path] = f
	}
	found := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, dir+string(filepath.Separator)))
		f, listed := want[rel]
		if d.IsDir() {
			if listed {
				return fmt.Errorf("%s is a directory, the manifest says %s", rel, f.Mode)
			}
			return nil
		}
		if !listed {
			return fmt.Errorf("%s is not in the manifest", rel)
		}
		found++
		return verifyFile(p, rel, f, d, proven[rel])
	})
	if err != nil {
		return fmt.Errorf("release does not match its manifest: %w", err)
	}
	if found != len(m) {
		return fmt.Errorf("release does not match its manifest: %d of %d files present", found, len(m))
	}
	return nil
}

func verifyFile(p, rel string, f manifest.Entry, d fs.DirEntry, contentProven bool) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	if f.Mode == manifest.ModeSymlink {
		target, err := os.Readlink(p)
		if err != nil || info.Mode()&fs.ModeSymlink == 0 || target != f.Target {
			return fmt.Errorf("%s is not the symlink -> %s", rel, f.Target)
		}
		return nil
	}
	wantPerm := fs.FileMode(0o644)
	if f.Mode == manifest.ModeExec {
		wantPerm = 0o755
	}
	if !info.Mode().IsRegular() || info.Mode().Perm() != wantPerm || info.Size() != f.Size {
		return fmt.Errorf("%s has mode %v and size %d, want %s %d", rel, info.Mode(), info.Size(), f.Mode, f.Size)
	}
	if contentProven {
		return nil
	}
	fh, err := os.Open(p)
	if err != nil {
		return err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fmt.Errorf("%s does not have the content the manifest says", rel)
	}
	return nil
}
