package receiver

import (
	"errors"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/hooks/termsafe"
)

// A command returns an error; exitCode is the one place that turns it into
// what the user sees and the session's exit status. There are three kinds:
//
//   - userError: the user can act on it; its sentence is shown.
//   - operatorError: an internal failure; its cause is logged under a
//     request id, the user sees what failed and the id to quote.
//   - exitStatus: the command already said what happened (a deploy's
//     progress lines, the output of `run`'s script); only the status goes
//     back.
//
// Any other error is treated as internal: its text may hold a path or a
// node's message, which is for the operator.

// userError is a failure the user can act on.
type userError struct{ sentence string }

func (e *userError) Error() string { return e.sentence }

// userErrorf makes a userError. The sentence may quote a node's error (an
// app's log lines): it is shown escaped like all app output.
func userErrorf(format string, a ...any) error {
	return &userError{sentence: fmt.Sprintf(format, a...)}
}

// operatorError is an internal failure: what failed, for the user, and why,
// for the log.
type operatorError struct {
	what  string
	cause error
}

func (e *operatorError) Error() string { return e.what + ": " + e.cause.Error() }
func (e *operatorError) Unwrap() error { return e.cause }

// exitStatus ends a command with this status and nothing more to say.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitWith passes a status through: nil for 0, an exitStatus otherwise.
func exitWith(code int) error {
	if code == 0 {
		return nil
	}
	return exitStatus(code)
}

// exitCode maps a command's error to the exit status, printing the user's
// sentence on stderr and logging an internal cause.
func exitCode(log zerolog.Logger, stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	var status exitStatus
	var user *userError
	var op *operatorError
	switch {
	case errors.As(err, &status):
		return int(status)
	case errors.As(err, &user):
		tellUser(stderr, user.sentence)
	case errors.As(err, &op):
		tellUser(stderr, operatorSentence(log, op.cause, op.what))
	default:
		tellUser(stderr, operatorSentence(log, err, "the command failed"))
	}
	return 1
}

// tellUser prints one sentence for the client.
func tellUser(stderr io.Writer, sentence string) {
	fmt.Fprintf(stderr, "gitreceive: %s\n", termsafe.String(sentence))
}

// operatorSentence logs cause under a new request id and returns what the
// user is told: what failed, not why, and the id to quote.
func operatorSentence(log zerolog.Logger, cause error, what string) string {
	id := newPushID()
	log.Error().Str("request", id).Err(cause).Msg(what)
	return fmt.Sprintf("%s; tell the operator (request %s)", what, id)
}
