// Package treepath resolves paths inside a tree that is not (yet) a
// directory on disk, a pushed git tree or a backup archive, following its
// symlinks as the kernel would and refusing any step out of the tree.
package treepath

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// MaxHops bounds symlink resolution, as the kernel's ELOOP does.
const MaxHops = 40

var (
	// ErrOutside: a ".." climbs above the top of the tree.
	ErrOutside = errors.New("leads outside the tree")
	// ErrAbsolute: a symlink on the way has an absolute target.
	ErrAbsolute = errors.New("symlink with an absolute target")
	// ErrLoop: more than MaxHops symlinks on the way.
	ErrLoop = errors.New("too many symlinks (a loop?)")
)

// Error says which symlink (Link, its Target) or path a resolution stopped
// at and why (Err: one of the errors above).
type Error struct {
	Link, Target string
	Err          error
}

func (e *Error) Error() string {
	if e.Link == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("symlink %s -> %s: %v", e.Link, e.Target, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Resolve follows rel from the directory dir ("" is the top; both slash
// paths inside the tree) and returns the in-tree path it names. link
// reports a path's symlink target, if the path is a symlink; every other
// path counts as a file or directory, so a dangling path resolves to itself.
func Resolve(dir, rel string, link func(p string) (target string, isLink bool)) (string, error) {
	cur := dir
	if cur == "." {
		cur = ""
	}
	todo := strings.Split(rel, "/")
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if cur == "" {
				return "", &Error{Err: ErrOutside}
			}
			if cur = path.Dir(cur); cur == "." {
				cur = ""
			}
			continue
		}
		next := path.Join(cur, c)
		target, isLink := link(next)
		if !isLink {
			cur = next
			continue
		}
		if hops++; hops > MaxHops {
			return "", &Error{Link: next, Target: target, Err: ErrLoop}
		}
		if strings.HasPrefix(target, "/") {
			return "", &Error{Link: next, Target: target, Err: ErrAbsolute}
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return cur, nil
}
