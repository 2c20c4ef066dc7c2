package backuparchive

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// has is the services an instance has, as Read asks.
func has(services ...string) func(string) bool {
	return func(name string) bool { return slices.Contains(services, name) }
}

type tarEntry struct {
	name, body string
	typ        byte
}

func tarOf(t *testing.T, entries ...tarEntry) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Mode: 0o600, Size: int64(len(e.body)), Typeflag: typ}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return &b
}

func manifestOf(svcs ...string) tarEntry {
	m, _ := json.Marshal(Manifest{Format: Format, App: "myapp", Instance: "production", Services: svcs})
	return tarEntry{name: ManifestName, body: string(m)}
}

func TestReadBackup(t *testing.T) {
	pg := tarEntry{name: "postgis.dump", body: "PGDMP\x01\x0e\x00" + strings.Repeat("x", 64)}
	creds := []string{"postgis", "mysql"}
	for _, tc := range []struct {
		name    string
		archive *bytes.Buffer
		want    string // "" = accepted
	}{
		{"good", tarOf(t, manifestOf("postgis"), pg), ""},
		{"not a tar", bytes.NewBufferString(strings.Repeat("not a tar ", 100)), "a tar stream"},
		{"empty", &bytes.Buffer{}, "incomplete"},
		{"no manifest first", tarOf(t, pg, manifestOf("postgis")), `starts with "postgis.dump"`},
		{"manifest not JSON", tarOf(t, tarEntry{name: ManifestName, body: "{"}, pg), "not a backup manifest"},
		{"unknown service", tarOf(t, manifestOf("postgis", "mongodb"), pg, tarEntry{name: "mongodb.dump", body: "x"}), `"mongodb.dump" is not SERVICE.dump`},
		{"not a dump", tarOf(t, manifestOf("postgis"), tarEntry{name: "postgis.sql", body: "x"}), `"postgis.sql" is not SERVICE.dump`},
		{"path trick", tarOf(t, manifestOf("postgis"), tarEntry{name: "../postgis.dump", body: "x"}), "is not SERVICE.dump"},
		{"symlink entry", tarOf(t, manifestOf("postgis"), tarEntry{name: "postgis.dump", typ: tar.TypeSymlink}), "is not SERVICE.dump"},
		{"service the instance lacks", tarOf(t, manifestOf("redis"), tarEntry{name: "redis.dump", body: "x"}), "does not have"},
		{"twice", tarOf(t, manifestOf("postgis"), pg, pg), "there twice"},
		{"not in manifest", tarOf(t, manifestOf("mysql"), pg), "not listed in its manifest"},
		{"missing a listed dump", tarOf(t, manifestOf("postgis", "mysql"), pg), "incomplete"},
		{"corrupt dump", tarOf(t, manifestOf("postgis"), tarEntry{name: "postgis.dump", body: "GARBAGE"}), "not a pg_dump custom-format archive"},
		{"huge manifest", tarOf(t, tarEntry{name: ManifestName, body: strings.Repeat(" ", 1<<17)}), "more than a manifest is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, names, err := Read(tc.archive, t.TempDir(), has(creds...))
			if tc.want == "" {
				if err != nil || len(names) != 1 {
					t.Fatalf("Read = %v, %v", names, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read error %v, want one with %q", err, tc.want)
			}
		})
	}
}

// FuzzReadBackup: restore reads a tar stream from whoever may manage the
// app; it must refuse or accept it without panicking, and write only
// SERVICE.dump files into its directory.
func FuzzReadBackup(f *testing.F) {
	var t testing.T
	f.Add(tarOf(&t, manifestOf("postgis"), tarEntry{name: "postgis.dump", body: "PGDMP\x01\x0e\x00xx"}).Bytes())
	f.Add(tarOf(&t, tarEntry{name: "../x", body: "x"}).Bytes())
	f.Add([]byte("not a tar"))
	creds := []string{"postgis", "files"}
	maxDumpSize = 1 << 20 // sparse headers promise more than a fuzzer can write
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		_, names, err := Read(bytes.NewReader(data), dir, has(creds...))
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), dumpSuffix) || e.IsDir() {
				t.Fatalf("Read wrote %s", e.Name())
			}
		}
		if err == nil && len(names) == 0 {
			t.Fatal("accepted a backup with nothing in it")
		}
	})
}

// TestWriteRead: what Write makes, Read takes back whole.
func TestWriteRead(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	dumps := map[string]string{"postgis": "PGDMP\x01\x0e\x00" + strings.Repeat("p", 100), "files": tarOf(t, tarEntry{name: "a.txt", body: "a"}).String()}
	for name, body := range dumps {
		if err := os.WriteFile(DumpPath(src, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := Write(&b, Manifest{App: "myapp", Instance: "production", Services: []string{"files", "postgis"}}, src); err != nil {
		t.Fatal(err)
	}
	m, names, err := Read(&b, dst, has("files", "postgis"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != Format || m.App != "myapp" || m.Instance != "production" || !slices.Equal(names, []string{"files", "postgis"}) {
		t.Fatalf("Read = %+v, %v", m, names)
	}
	for name, body := range dumps {
		if got, err := os.ReadFile(DumpPath(dst, name)); err != nil || string(got) != body {
			t.Fatalf("%s after the round trip: %q, %v", name, got, err)
		}
	}
}
