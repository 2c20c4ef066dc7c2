package services

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A hard link in an instance's directory to a file the app may not read
// (root's /etc/shadow) never comes back in a backup; the app's own files,
// hard-linked or not, do.
func TestFilesBackupLeavesOutOthersFiles(t *testing.T) {
	ctx := context.Background()
	for _, service := range []string{"files", "writable_root"} {
		t.Run(service, func(t *testing.T) {
			h := filesHost(t)
			s := lookupService(t, service)
			if _, err := s.Provision(ctx, h, filesInst, Credentials{}); err != nil {
				t.Fatal(err)
			}
			d := Dir(h, service, filesInst)
			uid, gid := filesIDs(t, h, service)
			// /etc/shadow itself when it shares a file system with the
			// data dir; else a root-only file of the same kind there.
			secret, marker := "/etc/shadow", []byte("root:")
			if err := os.Link(secret, filepath.Join(d, "shadow")); err != nil {
				if !errors.Is(err, os.ErrInvalid) && !strings.Contains(err.Error(), "cross-device") {
					t.Fatal(err)
				}
				secret, marker = filepath.Join(h.DataDir, "root-only"), []byte("ROOT-ONLY-SECRET")
				if err := os.WriteFile(secret, marker, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Link(secret, filepath.Join(d, "shadow")); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("hard link to %s", secret)
			if err := os.Mkdir(filepath.Join(d, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(secret, filepath.Join(d, "sub", "deeper")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "mine"), []byte("the app's own"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"mine", "sub"} {
				if err := os.Chown(filepath.Join(d, p), uid, gid); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Link(filepath.Join(d, "mine"), filepath.Join(d, "sub", "mine-again")); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			h.Output = &out
			var buf bytes.Buffer
			if err := s.Backup(ctx, h, filesInst, Credentials{}, &buf); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(buf.Bytes(), marker) {
				t.Fatalf("the backup holds %s's contents", secret)
			}
			var names []string
			tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
			for {
				hdr, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, hdr.Name)
			}
			if got := strings.Join(names, " "); got != "mine sub/ sub/mine-again" {
				t.Errorf("backup entries %q, want the app's own only", got)
			}
			for _, p := range []string{"/shadow: it belongs to uid 0", "/sub/deeper: it belongs to uid 0"} {
				if !strings.Contains(out.String(), "leaving out "+d+p) {
					t.Errorf("Backup did not say it left out %s: %q", p, out.String())
				}
			}
		})
	}
}
