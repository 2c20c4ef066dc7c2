package apps

import (
	"errors"
	"fmt"

	"github.com/rs/zerolog"
)

// An operation returns one of three kinds of error, which the front maps
// to what the user sees and the exit status (receiver's exitCode):
//
//   - UserError: the user can act on it; its sentence is shown.
//   - OperatorError: an internal failure; its cause is logged under a
//     request id, the user sees what failed and the id to quote.
//   - ExitStatus: the operation already said what happened (a deploy's
//     progress lines, the output of `run`'s script); only the status goes
//     back.
//
// Any other error is treated as internal: its text may hold a path or a
// node's message, which is for the operator.

// UserError is a failure the user can act on.
type UserError struct{ Sentence string }

func (e *UserError) Error() string { return e.Sentence }

// Failf makes a UserError. The sentence may quote a node's error (an
// app's log lines): it is shown escaped like all app output.
func Failf(format string, a ...any) error {
	return &UserError{Sentence: fmt.Sprintf(format, a...)}
}

// OperatorError is an internal failure: what failed, for the user, and why,
// for the log.
type OperatorError struct {
	What  string
	Cause error
}

func (e *OperatorError) Error() string { return e.What + ": " + e.Cause.Error() }
func (e *OperatorError) Unwrap() error { return e.Cause }

// Internal makes an OperatorError: the user is told what failed, the log
// gets cause (a path or a node's message is for the operator).
func Internal(cause error, format string, a ...any) error {
	return &OperatorError{What: fmt.Sprintf(format, a...), Cause: cause}
}

// ExitStatus ends a command with this status and nothing more to say.
type ExitStatus int

func (e ExitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// ExitWith passes a status through: nil for 0, an ExitStatus otherwise.
func ExitWith(code int) error {
	if code == 0 {
		return nil
	}
	return ExitStatus(code)
}

// tellOperator logs cause, an internal failure, with the request's fields,
// and returns what the user is told: what failed, not why.
func tellOperator(log zerolog.Logger, cause error, format string, a ...any) error {
	what := fmt.Sprintf(format, a...)
	log.Error().Err(cause).Msg(what)
	return errors.New(what + "; tell the operator")
}
