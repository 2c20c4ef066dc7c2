package nodes

import (
	"fmt"
	"runtime/debug"
)

// Panic is a panic raised in a goroutine nodes started for its caller (one
// node's part of a deploy), raised again in the caller's goroutine once
// the others are done. The receiver recovers panics per session and hook
// connection, with the request's fields and its app lock; a panic left in
// a worker goroutine would end the whole daemon instead.
type Panic struct {
	Node  string
	Value any
	Stack []byte // where the worker panicked
}

func (p *Panic) Error() string {
	if p.Node == "" {
		return fmt.Sprint(p.Value)
	}
	return fmt.Sprintf("node %s: %v", p.Node, p.Value)
}

// catchPanic, deferred directly in a worker goroutine, keeps its panic in
// *dst for the caller to raise again (raisePanics).
func catchPanic(dst **Panic, node string) {
	v := recover()
	if v == nil {
		return
	}
	if p, ok := v.(*Panic); ok { // already handed over by a nested worker
		if p.Node == "" { // by a lineWriter, which knows no node
			p.Node = node
		}
		*dst = p
		return
	}
	*dst = &Panic{Node: node, Value: v, Stack: debug.Stack()}
}

// raisePanics panics with the first panic the workers kept, once they have
// all ended.
func raisePanics(ps []*Panic) {
	for _, p := range ps {
		if p != nil {
			panic(p)
		}
	}
}
