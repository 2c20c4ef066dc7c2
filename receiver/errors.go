package receiver

import (
	"errors"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/hooks/termsafe"
	"github.com/gitreceive/gitreceive/receiver/apps"
	"github.com/gitreceive/gitreceive/receiver/guard"
)

// A command returns an error; exitCode is the one place that turns it into
// what the user sees and the session's exit status. The kinds are the
// back-end's (apps.UserError, apps.OperatorError, apps.ExitStatus); any
// other error is treated as internal: its text may hold a path or a node's
// message, which is for the operator.

// exitCode maps a command's error to the exit status, printing the user's
// sentence on stderr and logging an internal cause.
func exitCode(log zerolog.Logger, stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	var status apps.ExitStatus
	var user *apps.UserError
	var op *apps.OperatorError
	switch {
	case errors.As(err, &status):
		return int(status)
	case errors.As(err, &user):
		tellUser(stderr, user.Sentence)
	case errors.As(err, &op):
		tellUser(stderr, operatorSentence(log, op.Cause, op.What))
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
	id := guard.NewID()
	log.Error().Str("request", id).Err(cause).Msg(what)
	return fmt.Sprintf("%s; tell the operator (request %s)", what, id)
}
