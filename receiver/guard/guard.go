// Package guard keeps a panic in one request from ending the daemon: every
// session, hook connection and goroutine of the receiver runs under it.
package guard

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/nodes"
)

// Recover turns a panic of the goroutine that defers it into a log
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
func Recover(log *zerolog.Logger, what string, tell func(sentence string)) {
	v := recover()
	if v == nil {
		return
	}
	id := NewID()
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
		tell(InternalError(id))
	}
}

// InternalError is what the user sees of a panic: no detail of it (the
// panic value may quote anything in memory), only the id to give the
// operator, who finds the cause and the stack in the log under "request".
func InternalError(id string) string {
	return fmt.Sprintf("internal error (%s); the operator can find it in the log", id)
}

// Go starts fn in a goroutine guarded by Recover. Every goroutine
// the receiver starts goes through it (TestEveryGoroutineIsGuarded).
func Go(log zerolog.Logger, what string, fn func()) {
	go func() {
		defer Recover(&log, what, nil)
		fn()
	}()
}

// panicHook, set only by tests, is called at the points named by
// Point so a test can make a command or a deploy step panic.
// Atomic because the server's goroutines read it while a test sets it.
var panicHook atomic.Pointer[func(point string)]

// Point calls panicHook, if a test set one, at a named point.
func Point(point string) {
	if f := panicHook.Load(); f != nil {
		(*f)(point)
	}
}

// SetPanicHook makes the points Point names call f (which may panic)
// until the returned restore runs. For tests only.
func SetPanicHook(f func(point string)) (restore func()) {
	panicHook.Store(&f)
	return func() { panicHook.Store(nil) }
}

// NewID is a short random id: a push's, or a request's that the user
// quotes to the operator.
func NewID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
