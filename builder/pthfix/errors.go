package pthfix

import (
	"errors"
	"fmt"
)

// Sentinel errors, for callers that need to tell failures apart with
// errors.Is. The errors Fix returns are *LineError values (joined when a file
// has several problems) whose messages name file:line and say what to do.
var (
	ErrTooLarge    = errors.New("file too large")
	ErrNotUTF8     = errors.New("not valid UTF-8")
	ErrNUL         = errors.New("NUL byte in line")
	ErrLineTooLong = errors.New("line too long")
	ErrDotDot      = errors.New(".. in path")
	ErrNoMatch     = errors.New("absolute path matches no directory")
	ErrAmbiguous   = errors.New("absolute path matches several directories")
	// ErrUnwritable: the matching directory's name cannot be written as a
	// relative entry Python would read back (it starts with # or
	// "import ", or with whitespace Python strips).
	ErrUnwritable = errors.New("matching directory cannot be written in the file")
)

// LineError is one problem in a file, at Line (1-based; 0 when it concerns
// the whole file). Err is one of the sentinels above.
type LineError struct {
	File   string
	Line   int
	Err    error
	Detail string // the sentence after "file:line: "
}

func (e *LineError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Detail)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Detail)
}

func (e *LineError) Unwrap() error { return e.Err }

// lineErrorf builds a LineError whose Detail is fmt.Sprintf(format, args...).
func lineErrorf(file string, line int, kind error, format string, args ...any) *LineError {
	return &LineError{File: file, Line: line, Err: kind, Detail: fmt.Sprintf(format, args...)}
}

// joinProblems turns a file's problems into one error. Past maxReported the
// rest are only counted: a broken 1 MiB file should not produce a 1 MiB
// message, and the first few are enough to see what went wrong.
func joinProblems(file string, problems []error) error {
	if len(problems) == 1 {
		return problems[0]
	}
	if len(problems) <= maxReported {
		return errors.Join(problems...)
	}
	shown := append(problems[:maxReported:maxReported],
		fmt.Errorf("%s: %d more lines have problems; fix the ones above and push again", file, len(problems)-maxReported))
	return errors.Join(shown...)
}
