package services

import "strings"

// redactedError is an error whose message had secrets taken out; it
// keeps the original for errors.Is/As (context cancellation and such).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact replaces every secret in err's message: the MariaDB client, for
// one, echoes a failing statement (IDENTIFIED BY '...' included) on
// stderr, which command.run puts into the error.
func redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}
