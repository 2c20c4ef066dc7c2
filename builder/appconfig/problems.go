package appconfig

import (
	"fmt"
	"strings"
)

// Error is one problem that makes app.ini unusable. Its text is written for
// the person who pushed: where the problem is, what it is, and how to fix it.
type Error struct {
	File    string // what the caller called the file, e.g. "app.ini"
	Line    int    // 1-based; 0 when no single line is to blame
	Key     string // "" when the problem is not about one key
	Message string
	Err     error // the underlying cause (e.g. the ini parser's error), or nil
}

// Error formats e as "file:line: key: message", leaving out the parts that
// are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(position(e.File, e.Line))
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in one app.ini, in line order (those with
// no line first), so a pusher can fix them all before pushing again. Parse
// only returns it non-empty.
type Errors []*Error

// Error puts each problem on its own line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find the first *Error.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// Warning is something in app.ini that is ignored or suspicious but does
// not stop the push.
type Warning struct {
	File    string
	Line    int // 1-based; 0 when unknown
	Key     string
	Message string // names the key itself, e.g. "unknown key runer; did you mean runner?"
}

// String formats w as "file:line: message".
func (w Warning) String() string {
	return position(w.File, w.Line) + ": " + w.Message
}

// position is "file:line", or just "file" when the line is unknown.
func position(file string, line int) string {
	if line <= 0 {
		return file
	}
	return fmt.Sprintf("%s:%d", file, line)
}
