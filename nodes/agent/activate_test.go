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
)

// placed receives and starts release n of app/production in root (a moved
// root: placed and switched, not served).
func placed(t *testing.T, root string, n int) {
	t.Helper()
	spec, _ := json.Marshal(Spec{Platform: "python", Runner: "app.py", Callable: "application",
		Locations: []Location{{Host: "app.example.com"}}, HealthCheck: "/"})
	files := map[string]string{"app.py": fmt.Sprintf("v = %d\n", n)}
	if _, errOut, code := runAgent(t, root, receiveInput(t, files, nil), "receive", "app", "production", fmt.Sprint(n)); code != 0 {
		t.Fatalf("receive v%d: %s", n, errOut)
	}
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), root, "v", []string{"start", "app", "production", fmt.Sprint(n)}, bytes.NewReader(spec), &out, &errOut); code != 0 {
		t.Fatalf("start v%d: %s", n, errOut.String())
	}
}

func activated(t *testing.T, root string, n int) {
	t.Helper()
	if _, errOut, code := runAgent(t, root, nil, "activate", "app", "production", fmt.Sprint(n)); code != 0 {
		t.Fatalf("activate v%d: %s", n, errOut)
	}
}

// A receiver that went away before it heard that a node switched (its
// session hung up, which cancels the agent) would leave that node alone on
// the new release while the others are switched back: the agent goes back
// itself.
func TestActivateGoesBackWhenTheReceiverLeft(t *testing.T) {
	root := t.TempDir()
	placed(t, root, 1)
	activated(t, root, 1)
	placed(t, root, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	code := Run(ctx, root, "v", []string{"activate", "app", "production", "2"}, nil, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "the receiver went away while v2 was being switched to") {
		t.Fatalf("activate with the receiver gone: exit %d, %q", code, errOut.String())
	}
	if r := releasesOf(t, root); r.Current != 1 || r.Previous != 0 {
		t.Fatalf("after an activate whose receiver left: %+v, want v1 live as before", r)
	}
	// The first release of an instance goes back to nothing.
	first := t.TempDir()
	placed(t, first, 1)
	errOut.Reset()
	if code := Run(ctx, first, "v", []string{"activate", "app", "production", "1"}, nil, &out, &errOut); code == 0 {
		t.Fatal("activate of a first release with the receiver gone succeeded")
	}
	if r := releasesOf(t, first); r.Current != 0 {
		t.Fatalf("a first release stayed live after its receiver left: %+v", r)
	}
}

// The previous link is written with current, before routing: one that
// cannot be written (a full disk) fails the switch and leaves both links
// as they were, rather than a live release whose previous link is stale
// (take-backs go to previous).
func TestActivateFailsWhenPreviousCannotBeRecorded(t *testing.T) {
	root := t.TempDir()
	for n := 1; n <= 2; n++ {
		placed(t, root, n)
		activated(t, root, n)
	}
	placed(t, root, 3)
	// Nothing can be made where the new previous link is prepared.
	if err := os.MkdirAll(filepath.Join(root, "app", "production", ".previous.new", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runAgent(t, root, nil, "activate", "app", "production", "3")
	if code == 0 || !strings.Contains(errOut, "recording v2 as the previous release") {
		t.Fatalf("activate that cannot record previous: exit %d, %q", code, errOut)
	}
	if r := releasesOf(t, root); r.Current != 2 || r.Previous != 1 {
		t.Fatalf("after the failed switch: %+v, want v2 live and v1 previous as before", r)
	}
}
