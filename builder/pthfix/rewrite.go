package pthfix

import "fmt"

// Rewrite records one changed line, for the push log and for tests.
type Rewrite struct {
	File string
	Line int    // 1-based
	From string // the absolute path as written, without surrounding whitespace
	To   string // the relative path that replaced it
}

// String formats r as "lib/python/myapp.pth:1: /home/alice/myapp/src/myapp
// -> ../../src/myapp".
func (r Rewrite) String() string {
	return fmt.Sprintf("%s:%d: %s -> %s", r.File, r.Line, r.From, r.To)
}
