package receiver

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/nodes"
)

// recoverPanic turns a panic of the goroutine that defers it into a log
// entry and one sentence for the user, so that a bug in one command or
// deploy ends that request only: gliderlabs/ssh, the hook socket and our own
// background work all run in bare goroutines, and an unrecovered panic in
// any of them would end the daemon and every deploy in flight.
//
// It must be deferred directly (recover works only there), first in the
// goroutine, so that every other deferred call, the release of the app lock
// among them, has run when it reports. log is a pointer because a session
// adds fields (key, command, push) after the defer. tell, if not nil,
// receives the sentence for the user; background work has nobody to tell.
func recoverPanic(log *zerolog.Logger, what string, tell func(sentence string)) {
	v := recover()
	if v == nil {
		return
	}
	id := newPushID()
	ev := log.Error().Str("request", id).Str("in", what)
	// A panic in a node worker was handed over to the goroutine waiting for
	// it (nodes.Panic); its own stack is the one that shows the bug.
	stack := debug.Stack()
	if np, ok := v.(*nodes.Panic); ok {
		v, stack = np.Value, np.Stack
		ev = ev.Str("node", np.Node)
	}
	ev.Str("panic", fmt.Sprint(v)).Str("stack", string(stack)).Msg("internal error: panic recovered")
	if tell != nil {
		tell(internalError(id))
	}
}

// internalError is what the user sees of a panic: no detail of it (the
// panic value may quote anything in memory), only the id to give the
// operator, who finds the cause and the stack in the log under "request".
func internalError(id string) string {
	return fmt.Sprintf("internal error (%s); the operator can find it in the log", id)
}

// tellOperator logs cause, an internal failure, with the request's fields,
// and returns what the user is told: what failed, not why.
func tellOperator(log zerolog.Logger, cause error, format string, a ...any) error {
	what := fmt.Sprintf(format, a...)
	log.Error().Err(cause).Msg(what)
	return errors.New(what + "; tell the operator")
}

// goSafe starts fn in a goroutine guarded by recoverPanic. Every goroutine
// the receiver starts goes through it (TestEveryGoroutineIsGuarded).
func goSafe(log zerolog.Logger, what string, fn func()) {
	go func() {
		defer recoverPanic(&log, what, nil)
		fn()
	}()
}

// panicHook, set only by tests, is called at the points named by
// testPoint so a test can make a command or a deploy step panic.
// Atomic because the server's goroutines read it while a test sets it.
var panicHook atomic.Pointer[func(point string)]

// testPoint calls panicHook, if a test set one, at a named point.
func testPoint(point string) {
	if f := panicHook.Load(); f != nil {
		(*f)(point)
	}
}
