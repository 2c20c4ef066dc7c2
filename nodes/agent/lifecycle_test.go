package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// releasesOf runs `releases` and decodes it.
func releasesOf(t *testing.T, root string) Releases {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), root, "v", []string{"releases", "app", "production"}, nil, &out, &errOut); code != 0 {
		t.Fatal(errOut.String())
	}
	var r Releases
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// A moved root is placed and switched, not served; activate keeps the
// newest KeepReleases releases (live and previous always among them), and
// aborting the release at prev.HOST hands that place to the next older one.
func TestLifecycleKeepsReleases(t *testing.T) {
	root := t.TempDir()
	spec, _ := json.Marshal(Spec{Platform: "python", Runner: "app.py", Callable: "application",
		Locations: []Location{{Host: "app.example.com"}}, HealthCheck: "/", KeepReleases: 3})
	deploy := func(n int) {
		t.Helper()
		files := map[string]string{"app.py": fmt.Sprintf("v = %d\n", n)}
		if _, errOut, code := runAgent(t, root, receiveInput(t, files, nil), "receive", "app", "production", fmt.Sprint(n)); code != 0 {
			t.Fatalf("receive v%d: %s", n, errOut)
		}
		var out, errOut bytes.Buffer
		if code := Run(context.Background(), root, "v", []string{"start", "app", "production", fmt.Sprint(n)}, bytes.NewReader(spec), &out, &errOut); code != 0 {
			t.Fatalf("start v%d: %s", n, errOut.String())
		}
		if !strings.Contains(out.String(), "not served") {
			t.Fatalf("start in a moved root says %q", out.String())
		}
		if _, errOut, code := runAgent(t, root, nil, "activate", "app", "production", fmt.Sprint(n)); code != 0 {
			t.Fatalf("activate v%d: %s", n, errOut)
		}
	}
	for n := 1; n <= 6; n++ {
		deploy(n)
	}
	if r := releasesOf(t, root); r.Current != 6 || r.Previous != 5 || fmt.Sprint(r.Present) != "[4 5 6]" {
		t.Fatalf("after six deploys: %+v", r)
	}
	// Rolling back to v5 keeps v6 as the previous one.
	if _, errOut, code := runAgent(t, root, nil, "activate", "app", "production", "5"); code != 0 {
		t.Fatal(errOut)
	}
	if r := releasesOf(t, root); r.Current != 5 || r.Previous != 6 {
		t.Fatalf("after activating v5: %+v", r)
	}
	// An undone deploy aborts v6, the previous one: v4 takes its place.
	if _, errOut, code := runAgent(t, root, nil, "abort", "app", "production", "6"); code != 0 {
		t.Fatal(errOut)
	}
	if r := releasesOf(t, root); r.Current != 5 || r.Previous != 4 || fmt.Sprint(r.Present) != "[4 5]" {
		t.Fatalf("after aborting v6: %+v", r)
	}
	// A start for a release that is not there, or with a hostile spec, is refused.
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), root, "v", []string{"start", "app", "production", "9"}, bytes.NewReader(spec), &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "not on this node") {
		t.Fatalf("start of a missing release: %d %s", code, errOut.String())
	}
	bad, _ := json.Marshal(Spec{Platform: "python", Runner: "app.py", Callable: "application", Locations: []Location{{Host: "x;y"}}, HealthCheck: "/"})
	errOut.Reset()
	if code := Run(context.Background(), root, "v", []string{"start", "app", "production", "5"}, bytes.NewReader(bad), &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "DNS name") {
		t.Fatalf("start with a hostile spec: %d %s", code, errOut.String())
	}
}
