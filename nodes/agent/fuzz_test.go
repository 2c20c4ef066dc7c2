package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/manifest"
)

// FuzzAssembleContents feeds arbitrary bytes as the tar stream of a small
// release: assemble must never panic, never write outside its release
// directory, and either fail leaving nothing or produce a verified release.
func FuzzAssembleContents(f *testing.F) {
	files := map[string]string{"a.py": "a", "lib/b.py": "b", "bin/run": "#!/bin/sh\n", "link": "->a.py"}
	m := manifestOf(files)
	good := tarOf(f, files, manifest.Needed(nil, m)).Bytes()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dst := filepath.Join(root, "release", "v1")
		if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		err := assemble(dst, "", nil, m, bytes.NewReader(data))
		entries, _ := os.ReadDir(root)
		if len(entries) != 1 {
			t.Fatalf("assemble wrote beside its release directory: %v", entries)
		}
		if err != nil {
			if _, statErr := os.Stat(dst); statErr == nil {
				t.Fatal("a failed assemble left its release directory")
			}
			return
		}
		if err := Verify(dst, m); err != nil {
			t.Fatalf("assemble succeeded but Verify fails: %v", err)
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
	f.Add([]byte(`{"platform":"python","runner":"a.py","locations":[{"host":"a.b"}],"background_workers":[{"name":"mail","command":"bin/m.py",` +
		`"args":["-q"],"count":2,"stop_timeout":30,"one_node":true}],"singletons":true,"cron_jobs":[{"name":"n","schedule":"*/5 * * * mon-fri",` +
		`"command":"bin/c","timeout":60}],"cron_timezone":"Europe/Paris"}`))
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
		if _, err := rt.instance("app", "production").renderNginx(2, 1, spec, false); err != nil {
			t.Fatalf("a valid spec does not render: %v\n%s", err, data)
		}
		for _, j := range spec.CronJobs {
			nextCronRun(spec, j, time.Now()) // a schedule the parser refuses never runs; none panics
		}
	})
}

// FuzzManifest feeds arbitrary JSON as the manifest `receive` reads from
// the wire, its contents made to match (so that the fuzzer reaches
// assemble, not only the hash check): Validate never panics, and from any
// manifest it accepts assemble writes only inside its release directory,
// where no symlink leads out of it.
func FuzzManifest(f *testing.F) {
	type entry struct{ Path, Mode, Target, Content string }
	seed := func(es ...entry) {
		data, _ := json.Marshal(es)
		f.Add(data)
	}
	seed(entry{"a.py", manifest.ModeFile, "", "a"}, entry{"lib/b.py", manifest.ModeExec, "", "b"}, entry{"l", manifest.ModeSymlink, "lib/b.py", ""})
	seed(entry{"x/../../etc/passwd", manifest.ModeFile, "", "x"})
	seed(entry{"lib", manifest.ModeSymlink, "..", ""}, entry{"lib/x", manifest.ModeFile, "", "x"})
	seed(entry{"a/l", manifest.ModeSymlink, "../../b", ""})
	seed(entry{"d", manifest.ModeSymlink, "d/e", ""}, entry{"d/e", manifest.ModeSymlink, "../..", ""})
	f.Fuzz(func(t *testing.T, data []byte) {
		var es []entry
		if json.Unmarshal(data, &es) != nil || len(es) > 64 {
			return
		}
		var m manifest.Manifest
		files := map[string]string{}
		for _, e := range es {
			file := manifest.Entry{Path: e.Path, Mode: e.Mode, Target: e.Target, Size: int64(len(e.Content)), SHA256: hashOf(e.Content)}
			if e.Mode == manifest.ModeSymlink {
				file.Size, file.SHA256 = int64(len(e.Target)), hashOf(e.Target)
			} else {
				files[e.Path] = e.Content
			}
			m = append(m, file)
		}
		if m.Validate() != nil {
			return
		}
		for _, file := range m {
			if !filepath.IsLocal(file.Path) {
				t.Fatalf("Validate accepted the path %q", file.Path)
			}
		}
		root := t.TempDir()
		dst := filepath.Join(root, "release", "v1")
		if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		err := assemble(dst, "", nil, m, tarOf(t, files, manifest.Needed(nil, m)))
		if entries, _ := os.ReadDir(root); len(entries) != 1 {
			t.Fatalf("assemble wrote beside its release directory: %v", entries)
		}
		if err != nil {
			return
		}
		// Every symlink, followed as the kernel would, stays in dst.
		_ = filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.Type()&os.ModeSymlink == 0 {
				return err
			}
			target, _ := os.Readlink(p)
			if resolved := filepath.Join(filepath.Dir(p), target); resolved != dst && !strings.HasPrefix(resolved, dst+"/") {
				t.Fatalf("symlink %s -> %s leads out of the release", p, target)
			}
			return nil
		})
	})
}

// FuzzReadPlan feeds arbitrary bytes as the receiver's side of a prepare
// session: the plan line is read without panicking, within its bound,
// and what follows it is left for receive.
func FuzzReadPlan(f *testing.F) {
	f.Add([]byte(`{"go":true,"spec":{"platform":"python"}}` + "\n" + `{"a":1}` + "\n"))
	f.Add([]byte(`{"go":false}` + "\n"))
	f.Add([]byte{})
	f.Add([]byte("not json\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bufio.NewReaderSize(bytes.NewReader(data), 16)
		plan, err := readPlan(in)
		if err != nil {
			return
		}
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(data) > 0 && plan.Go {
				t.Fatalf("a plan without its newline said go: %q", data)
			}
			return
		}
		rest, _ := io.ReadAll(in)
		if !bytes.Equal(rest, data[i+1:]) {
			t.Fatalf("readPlan read past its line: left %q of %q", rest, data)
		}
	})
}
