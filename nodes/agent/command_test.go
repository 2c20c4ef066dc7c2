package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/manifest"
	"github.com/gitreceive/gitreceive/nodes/agentapi"
)

func runAgent(t *testing.T, root string, stdin []byte, args ...string) (Status, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), root, "gitreceive test", args, bytes.NewReader(stdin), &out, &errOut)
	var st Status
	if code == 0 && out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &st); err != nil {
			t.Fatalf("%v: output %q: %v", args, out.String(), err)
		}
	}
	return st, errOut.String(), code
}

func receiveInput(t *testing.T, files map[string]string, have manifest.Manifest) []byte {
	t.Helper()
	m := manifestOf(files)
	line, _ := json.Marshal(m)
	return append(append(line, '\n'), tarOf(t, files, manifest.Needed(have, m)).Bytes()...)
}

func TestAgentLifecycle(t *testing.T) {
	root := t.TempDir()
	if st, _, code := runAgent(t, root, nil, "manifest", "app", "production"); code != 0 || st.Release != 0 || st.Agent != "gitreceive test" {
		t.Fatalf("empty manifest: %+v %d", st, code)
	}
	v1 := map[string]string{"a.py": "a", "b.py": "b"}
	st, errOut, code := runAgent(t, root, receiveInput(t, v1, nil), "receive", "app", "production", "1")
	if code != 0 || st.Release != 1 || st.Files != 2 {
		t.Fatalf("receive v1: %+v %s", st, errOut)
	}
	if _, errOut, code := runAgent(t, root, nil, "activate", "app", "production", "1"); code != 0 {
		t.Fatalf("activate: %s", errOut)
	}
	st, _, _ = runAgent(t, root, nil, "manifest", "app", "production")
	if st.Release != 1 || len(st.Manifest) != 2 {
		t.Fatalf("manifest after activate: %+v", st)
	}

	v2 := map[string]string{"a.py": "a", "b.py": "bb"}
	if st, errOut, code := runAgent(t, root, receiveInput(t, v2, st.Manifest), "receive", "app", "production", "2"); code != 0 || st.Received == 0 {
		t.Fatalf("receive v2: %+v %s", st, errOut)
	}
	// Aborting the live release is refused; aborting v2 removes it.
	if _, errOut, code := runAgent(t, root, nil, "abort", "app", "production", "1"); code == 0 || !strings.Contains(errOut, "live") {
		t.Fatalf("abort live: %d %s", code, errOut)
	}
	if _, errOut, code := runAgent(t, root, nil, "abort", "app", "production", "2"); code != 0 {
		t.Fatalf("abort v2: %s", errOut)
	}
	if _, err := os.Stat(filepath.Join(root, "app/production/releases/v2")); err == nil {
		t.Fatal("aborted v2 still there")
	}
	if _, errOut, code := runAgent(t, root, nil, "activate", "app", "production", "2"); code == 0 || !strings.Contains(errOut, "not received") {
		t.Fatalf("activate aborted: %d %s", code, errOut)
	}
	target, _ := os.Readlink(filepath.Join(root, "app/production/current"))
	if target != "releases/v1" {
		t.Fatalf("current -> %q", target)
	}

	for _, args := range [][]string{
		{"receive", "../etc", "production", "3"},
		{"receive", "app", "..", "3"},
		{"receive", "app", "production", "0"},
		{"receive", "app", "production", "x"},
		{"manifest", "app"},
		{"frob", "app", "production", "1"},
		{"receive", "app", "production", "3", "--fast"},
		{"status", "extra"},
		{"setup", "nginx; rm -rf /"},
		{},
	} {
		if _, _, code := runAgent(t, root, nil, args...); code == 0 {
			t.Errorf("%v accepted", args)
		}
	}
}

// A real app's manifest is far longer than the read buffer.
func TestAgentReceivesLargeManifest(t *testing.T) {
	files := map[string]string{}
	for i := 0; i < 5000; i++ {
		files[fmt.Sprintf("src/module_with_a_long_name_%05d.py", i)] = fmt.Sprintf("x = %d\n", i)
	}
	st, errOut, code := runAgent(t, t.TempDir(), receiveInput(t, files, nil), "receive", "app", "production", "1")
	if code != 0 || st.Files != 5000 {
		t.Fatalf("receive: %+v %s", st, errOut)
	}
}

// A live release edited on the node is reported with its own exit code;
// the receiver then sends everything with --full, which ignores it.
func TestAgentDamagedCurrentRelease(t *testing.T) {
	root := t.TempDir()
	v1 := map[string]string{"a.py": "a", "b.py": "b"}
	if _, errOut, code := runAgent(t, root, receiveInput(t, v1, nil), "receive", "app", "production", "1"); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := runAgent(t, root, nil, "activate", "app", "production", "1"); code != 0 {
		t.Fatal(errOut)
	}
	if err := os.WriteFile(filepath.Join(root, "app/production/releases/v1/a.py"), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	have := manifestOf(v1)
	v2 := map[string]string{"a.py": "a", "b.py": "b2"}
	_, errOut, code := runAgent(t, root, receiveInput(t, v2, have), "receive", "app", "production", "2")
	if code != ExitPreviousDamaged || !strings.Contains(errOut, "does not match its manifest") {
		t.Fatalf("receive from a damaged release: exit %d, %s", code, errOut)
	}
	st, errOut, code := runAgent(t, root, receiveInput(t, v2, nil), "receive", "app", "production", "2", "--full")
	if code != 0 || st.Files != 2 {
		t.Fatalf("receive --full: %d %s", code, errOut)
	}
	if err := Verify(filepath.Join(root, "app/production/releases/v2"), manifestOf(v2)); err != nil {
		t.Fatal(err)
	}
}

// deactivate undoes the first activation of an instance; status lists
// what is live.
func TestAgentDeactivateAndStatus(t *testing.T) {
	root := t.TempDir()
	v1 := map[string]string{"a.py": "a"}
	runAgent(t, root, receiveInput(t, v1, nil), "receive", "app", "production", "1")
	runAgent(t, root, receiveInput(t, v1, nil), "receive", "app", "branch-x", "1")
	if _, errOut, code := runAgent(t, root, nil, "activate", "app", "production", "1"); code != 0 {
		t.Fatal(errOut)
	}
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), root, "gitreceive test", []string{"status"}, nil, &out, &errOut); code != 0 {
		t.Fatal(errOut.String())
	}
	var ns NodeStatus
	if err := json.Unmarshal(out.Bytes(), &ns); err != nil {
		t.Fatal(err)
	}
	want := []Instance{{App: "app", Instance: "branch-x", Release: 0}, {App: "app", Instance: "production", Release: 1}}
	if ns.Agent != "gitreceive test" || ns.FreeDisk <= 0 || fmt.Sprint(ns.Instances) != fmt.Sprint(want) {
		t.Fatalf("status: %+v", ns)
	}
	if _, errOut, code := runAgent(t, root, nil, "deactivate", "app", "production", "2"); code == 0 || !strings.Contains(errOut, "not live") {
		t.Fatalf("deactivate of a release that is not live: %d %s", code, errOut)
	}
	if _, errOut, code := runAgent(t, root, nil, "deactivate", "app", "production", "1"); code != 0 {
		t.Fatal(errOut)
	}
	if _, err := os.Lstat(filepath.Join(root, "app/production/current")); err == nil {
		t.Fatal("current still there after deactivate")
	}
	// status of a root that does not exist yet (a node never deployed to).
	out.Reset()
	if code := Run(context.Background(), filepath.Join(root, "none", "apps"), "v", []string{"status"}, nil, &out, &errOut); code != 0 {
		t.Fatal(errOut.String())
	}
}

// Every verb of agentapi has its handler here (run answers with an exit
// code, apart from the table).
func TestEveryVerbHasAHandler(t *testing.T) {
	for _, verb := range agentapi.Verbs() {
		if _, ok := handlers[verb]; !ok && verb != "run" {
			t.Errorf("verb %q has no handler", verb)
		}
	}
	if len(handlers) != len(agentapi.Verbs())-1 {
		t.Errorf("%d handlers for %d verbs besides run", len(handlers), len(agentapi.Verbs())-1)
	}
}
