package cmdline

import "errors"

// Sentinel errors returned (wrapped with the byte offset) by Split. Test for
// them with errors.Is.
var (
	ErrUnterminatedSingleQuote = errors.New("unterminated single quote")
	ErrUnterminatedDoubleQuote = errors.New("unterminated double quote")
	ErrTrailingBackslash       = errors.New("trailing backslash")
	ErrNULByte                 = errors.New("NUL byte")
	ErrInvalidUTF8             = errors.New("invalid UTF-8")
	ErrTooLong                 = errors.New("command too long")
)
