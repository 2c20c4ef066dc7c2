package keystore

import (
	"errors"
	"fmt"
)

// Sentinel errors, for callers that need to tell failures apart with
// errors.Is. The errors returned carry a full message naming the input.
var (
	ErrNotFound       = errors.New("key not found")
	ErrDuplicate      = errors.New("duplicate key or name")
	ErrInvalidName    = errors.New("invalid key name")
	ErrInvalidApp     = errors.New("invalid app name")
	ErrInvalidRole    = errors.New("invalid role or apps")
	ErrRejectedKey    = errors.New("public key not accepted")
	ErrMalformedStore = errors.New("malformed key store file")
)

// kindError pairs a sentinel with a complete user-facing message, so the
// message reads as one sentence instead of "sentinel: detail".
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// errorf returns an error whose message is fmt.Sprintf(format, args...) and
// which matches kind (and anything wrapped with %w in args) under errors.Is.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// lineError places a problem in the store file at path:line so the operator
// can go and fix it.
type lineError struct {
	path string
	line int
	err  error
}

func (e *lineError) Error() string   { return fmt.Sprintf("%s:%d: %v", e.path, e.line, e.err) }
func (e *lineError) Unwrap() []error { return []error{ErrMalformedStore, e.err} }
