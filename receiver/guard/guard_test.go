package guard

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gitreceive/gitreceive/nodes"
)

func TestRecoverPanic(t *testing.T) {
	tests := []struct {
		name      string
		value     any // what the goroutine panics with; nil: it does not
		wantPanic string
		wantNode  string
		wantStack string // a frame the logged stack must show
	}{
		{name: "no panic"},
		{name: "string", value: "boom", wantPanic: "boom", wantStack: "TestRecoverPanic"},
		{name: "error", value: errors.New("nil map"), wantPanic: "nil map", wantStack: "TestRecoverPanic"},
		{name: "from a node worker", value: &nodes.Panic{Node: "n1", Value: "deep", Stack: []byte("goroutine 7 [running]:\nworker.go:1")},
			wantPanic: "deep", wantNode: "n1", wantStack: "worker.go:1"},
	}
	sentence := regexp.MustCompile(`^internal error \(([0-9a-f]{8})\); the operator can find it in the log$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := zerolog.New(&buf).With().Str("app", "myapp").Logger()
			var told []string
			func() {
				defer Recover(&log, "test", func(s string) { told = append(told, s) })
				// Fields added after the defer are logged too.
				log = log.With().Str("command", "apps").Logger()
				if tt.value != nil {
					panic(tt.value)
				}
			}()
			if tt.value == nil {
				if buf.Len() != 0 || told != nil {
					t.Fatalf("logged %q and told %q without a panic", buf.String(), told)
				}
				return
			}
			if len(told) != 1 || !sentence.MatchString(told[0]) {
				t.Fatalf("told %q, want one internal-error sentence", told)
			}
			var entry map[string]string
			if err := json.Unmarshal(buf.Bytes(), &entry); err != nil {
				t.Fatalf("log %q: %v", buf.String(), err)
			}
			want := map[string]string{"level": "error", "app": "myapp", "command": "apps", "in": "test",
				"request": sentence.FindStringSubmatch(told[0])[1], "panic": tt.wantPanic, "node": tt.wantNode}
			for k, v := range want {
				if entry[k] != v {
					t.Errorf("log field %s = %q, want %q", k, entry[k], v)
				}
			}
			if !strings.Contains(entry["stack"], tt.wantStack) {
				t.Errorf("logged stack lacks %q:\n%s", tt.wantStack, entry["stack"])
			}
		})
	}
}

// Every goroutine the receiver starts goes through Go: a bare `go`
// statement anywhere else in the receiver and its back-end (tests aside) would let one
// panic end the daemon.
func TestEveryGoroutineIsGuarded(t *testing.T) {
	var files []string
	for _, dir := range []string{".", "..", "../apps"} {
		got, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, got...)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if ok && fn.Name.Name == "Go" && fn.Recv == nil {
				continue
			}
			ast.Inspect(decl, func(n ast.Node) bool {
				if g, ok := n.(*ast.GoStmt); ok {
					t.Errorf("%s: a bare go statement; start it with guard.Go so that its panic is recovered", fset.Position(g.Pos()))
				}
				return true
			})
		}
	}
}
