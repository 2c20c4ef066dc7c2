package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzAssembleContents feeds arbitrary bytes as the tar stream of a small
// release: Assemble must never panic, never write outside its release
// directory, and either fail leaving nothing or produce a verified release.
func FuzzAssembleContents(f *testing.F) {
	files := map[string]string{"a.py": "a", "lib/b.py": "b", "bin/run": "#!/bin/sh\n", "link": "->a.py"}
	m := manifestOf(files)
	good := tarOf(f, files, Needed(nil, m)).Bytes()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dst := filepath.Join(root, "release", "v1")
		if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		err := Assemble(dst, "", nil, m, bytes.NewReader(data))
		entries, _ := os.ReadDir(root)
		if len(entries) != 1 {
			t.Fatalf("Assemble wrote beside its release directory: %v", entries)
		}
		if err != nil {
			if _, statErr := os.Stat(dst); statErr == nil {
				t.Fatal("a failed Assemble left its release directory")
			}
			return
		}
		if err := Verify(dst, m); err != nil {
			t.Fatalf("Assemble succeeded but Verify fails: %v", err)
		}
	})
}

// FuzzSpec feeds arbitrary JSON as the spec `start` reads from the wire:
// parsing and validation must never panic, and every spec that validates
// must render to an nginx configuration (Validate is the only gate before
// the config files are written).
func FuzzSpec(f *testing.F) {
	good, _ := json.Marshal(Spec{Platform: "python", Runner: "src/app/wsgi.py", Callable: "application",
		Locations: []Location{{Host: "app.example.com"}, {Host: "example.com", Path: "/blog"}}, HealthCheck: "/health",
		UpdateFetch: []FetchStep{{URLPath: "/setup"}, {Script: "bin/migrate", Args: []string{"a b"}}}, Env: map[string]string{"CONFIG_X": "100% $(HOME)"}})
	f.Add(good)
	f.Add([]byte(`{"platform":"php","runner":"index.php","locations":[{"host":"a.b"}],"health_check":"/"}`))
	f.Add([]byte(`{"platform":"python","runner":"a.py","callable":"x","locations":[{"host":"a;b"}]}`))
	rt := SystemRuntime()
	f.Fuzz(func(t *testing.T, data []byte) {
		var spec Spec
		if json.Unmarshal(data, &spec) != nil {
			return
		}
		spec = spec.WithDefaults()
		if spec.Validate() != nil {
			return
		}
		if _, err := renderNginx(rt, "app", "production", 2, 1, spec, false); err != nil {
			t.Fatalf("a valid spec does not render: %v\n%s", err, data)
		}
	})
}
