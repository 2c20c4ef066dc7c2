package nodes

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A panic in one node's goroutine reaches forEachNode's caller, as a
// *Panic naming the node and carrying the stack where it was raised, only
// after every other node's work has run.
func TestForEachNodeRaisesWorkerPanicInCaller(t *testing.T) {
	three := []Node{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	tests := []struct {
		name      string
		panicAt   string // node whose fn panics, "" for none
		nested    bool   // the panic comes from a forEachNode inside fn
		wantNode  string
		wantValue any
	}{
		{name: "no panic"},
		{name: "one node panics", panicAt: "b", wantNode: "b", wantValue: "boom"},
		{name: "nested forEachNode keeps the inner node", panicAt: "c", nested: true, wantNode: "inner", wantValue: "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ran atomic.Int32
			var got any
			func() {
				defer func() { got = recover() }()
				forEachNodeLimit(three, 2, func(_ int, n Node) {
					ran.Add(1)
					if n.Name != tt.panicAt {
						return
					}
					if tt.nested {
						forEachNode([]Node{{Name: "inner"}}, func(int, Node) { panic("boom") })
					}
					panic("boom")
				})
			}()
			if ran.Load() != int32(len(three)) {
				t.Fatalf("fn ran for %d nodes, want %d", ran.Load(), len(three))
			}
			if tt.wantNode == "" {
				if got != nil {
					t.Fatalf("panic %v, want none", got)
				}
				return
			}
			p, ok := got.(*Panic)
			if !ok {
				t.Fatalf("recovered %T %v, want *Panic", got, got)
			}
			if p.Node != tt.wantNode || p.Value != tt.wantValue {
				t.Fatalf("panic of node %q with %v, want node %q with %v", p.Node, p.Value, tt.wantNode, tt.wantValue)
			}
			if !strings.Contains(string(p.Stack), "TestForEachNodeRaisesWorkerPanicInCaller") {
				t.Fatalf("stack does not show where it panicked:\n%s", p.Stack)
			}
			if want := "node " + tt.wantNode + ": boom"; p.Error() != want {
				t.Fatalf("Error() = %q, want %q", p.Error(), want)
			}
		})
	}
}

// A panic in the line callback, on the goroutine that copies a node's
// output, fails the writes and is raised by Flush in the goroutine that
// waits for the node, which forEachNode hands to its caller with the
// node's name.
func TestLineWriterPanicRaisedByFlush(t *testing.T) {
	var got any
	func() {
		defer func() { got = recover() }()
		forEachNode([]Node{{Name: "n1"}}, func(int, Node) {
			w := &lineWriter{line: func(string) { panic("in line") }}
			done := make(chan error)
			go func() { // as os/exec's copying goroutine
				_, err := w.Write([]byte("one\n"))
				if err == nil {
					_, err = w.Write([]byte("two\n"))
				}
				done <- err
			}()
			if err := <-done; err != errLinePanicked {
				t.Errorf("Write after a panicking line: %v, want errLinePanicked", err)
			}
			if _, err := w.Write([]byte("three\n")); err != errLinePanicked {
				t.Errorf("later Write: %v, want errLinePanicked", err)
			}
			w.Flush()
			t.Error("Flush did not raise the line's panic")
		})
	}()
	p, ok := got.(*Panic)
	if !ok || p.Node != "n1" || p.Value != "in line" || !strings.Contains(string(p.Stack), "TestLineWriterPanicRaisedByFlush") {
		t.Fatalf("recovered %#v, want the line's panic on node n1 with its stack", got)
	}
}

// A panic in WriteContents (the caller's code, run in a goroutine of the
// upload) ends the node's prepare session and is raised in Prepare's
// caller; it does not leave the agent and the receiver each waiting for
// the other.
func TestPrepareRaisesAContentsPanic(t *testing.T) {
	ff, nodes := newFakeFleet(t, "a")
	r := testRelease("production")
	r.WriteContents = func(context.Context, []string, io.Writer) error { panic("reading git failed badly") }
	raised := make(chan any, 1)
	go func() {
		defer func() { raised <- recover() }()
		_, _ = ff.fleet.Prepare(context.Background(), nodes, r, func(Node, string) {}, func(Report) {})
	}()
	select {
	case v := <-raised:
		if v == nil || !strings.Contains(fmt.Sprint(v), "reading git failed badly") {
			t.Fatalf("Prepare raised %v, want the contents' panic", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Prepare hangs after a panic in WriteContents")
	}
}

// A panic in the ready callback (the caller's code, run in a node's
// goroutine) is raised in Prepare's caller once the other nodes are done,
// and no node is left in a prepare session waiting for a word to switch.
func TestPrepareEndsTheSessionsOnAReadyPanic(t *testing.T) {
	ff, nodes := newFakeFleet(t, "a", "b")
	func() {
		defer func() {
			if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), "counting failed") {
				t.Errorf("Prepare raised %v, want the ready callback's panic", v)
			}
		}()
		_, _ = ff.fleet.Prepare(context.Background(), nodes, testRelease("production"), func(Node, string) {}, func(r Report) {
			if r.Node.Name == "b" {
				panic("counting failed")
			}
		})
	}()
	if n := ff.sessions.Load(); n != 0 {
		t.Errorf("%d prepare sessions still open after the panic", n)
	}
}
