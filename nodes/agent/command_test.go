package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runAgent(t *testing.T, root string, stdin []byte, args ...string) (Status, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(root, "gitreceive test", args, bytes.NewReader(stdin), &out, &errOut)
	var st Status
	if code == 0 && out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &st); err != nil {
			t.Fatalf("%v: output %q: %v", args, out.String(), err)
		}
	}
	return st, errOut.String(), code
}

func receiveInput(t *testing.T, files map[string]string, have Manifest) []byte {
	t.Helper()
	m := manifestOf(files)
	line, _ := json.Marshal(m)
	return append(append(line, '\n'), tarOf(t, files, Needed(have, m)).Bytes()...)
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
