package services

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// filesHost is a Host with a fresh data directory, the app user "nobody"
// and, as nginx group, a group other than nobody's own when there is one
// (www-data on Debian), so that the two services' groups differ.
func filesHost(t *testing.T) Host {
	t.Helper()
	if os.Geteuid() != 0 {
		// As testbed.Require: CI must never pass by skipping.
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root: the files services chown to the app user (CI=true, so not skipping)")
		}
		t.Skip("needs root: the files services chown to the app user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("needs the user nobody: %v", err)
	}
	group := ""
	for _, g := range []string{"www-data", "nogroup", "nobody"} {
		if gr, err := user.LookupGroup(g); err == nil && (group == "" || gr.Gid != u.Gid) {
			group = g
			if gr.Gid != u.Gid {
				break
			}
		}
	}
	if group == "" {
		t.Skip("needs a group for nginx (www-data or nogroup)")
	}
	// The data directory must be reachable by nobody for nothing here,
	// but a real node's is 0755; so is this one.
	dir := filepath.Join(t.TempDir(), "data")
	return Host{DataDir: dir, AppUser: "nobody", NginxGroup: group, Output: io.Discard}
}

func filesIDs(t *testing.T, h Host, service string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(h.AppUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if service == "writable_root" {
		g, err := user.LookupGroup(h.NginxGroup)
		if err != nil {
			t.Fatal(err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid
}

func lookupService(t *testing.T, name string) Service {
	t.Helper()
	s, ok := Lookup(name)
	if !ok {
		t.Fatalf("service %s is not registered", name)
	}
	return s
}

var dirServiceCases = []struct {
	name    string
	sub     string
	env     string
	dirMode os.FileMode
}{
	{"files", "files", "CONFIG_FILES", 0o700},
	{"writable_root", "writable-root", "CONFIG_WRITABLE_ROOT", 0o750 | os.ModeSetgid},
}

var filesInst = Instance{App: "shop", Name: "feature/x"}

func TestFilesDir(t *testing.T) {
	h := Host{DataDir: "/var/lib/gitreceive"}
	res := filesInst.Resource()
	for _, tt := range []struct {
		service string
		inst    Instance
		want    string
	}{
		{"files", filesInst, "/var/lib/gitreceive/files/shop/" + res},
		{"writable_root", filesInst, "/var/lib/gitreceive/writable-root/shop/" + res},
		{"postgis", filesInst, ""},
		{"files", Instance{App: "../etc", Name: "main"}, ""},
		{"files", Instance{App: "Shop", Name: "main"}, ""},
		{"files", Instance{App: "", Name: "main"}, ""},
	} {
		if got := Dir(h, tt.service, tt.inst); got != tt.want {
			t.Errorf("Dir(%s, %v) = %q, want %q", tt.service, tt.inst, got, tt.want)
		}
	}
	if got := Dir(Host{}, "files", filesInst); got != "" {
		t.Errorf("Dir without a data dir = %q", got)
	}
	for _, ds := range dirServiceCases {
		s := lookupService(t, ds.name)
		if s.Where() != OnAppNodes || s.Packages() != nil || s.ClientPackages("php") != nil {
			t.Errorf("%s: where %v, packages %v %v", ds.name, s.Where(), s.Packages(), s.ClientPackages("php"))
		}
		env := s.Env(filesInst, Credentials{}, "ignored", h)
		if len(env) != 1 || env[ds.env] != Dir(h, ds.name, filesInst) {
			t.Errorf("%s: Env = %v", ds.name, env)
		}
	}
}

// checkFilesDir fails unless p is a directory (not a symlink) with owner, group
// and mode (permissions and setgid).
func checkFilesDir(t *testing.T, p string, uid, gid int, mode os.FileMode) {
	t.Helper()
	info, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	got := info.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSetuid | fs.ModeSticky | fs.ModeType)
	if !info.IsDir() || int(st.Uid) != uid || int(st.Gid) != gid || got != mode|fs.ModeDir {
		t.Errorf("%s: %v %d:%d, want %v %d:%d", p, got, st.Uid, st.Gid, mode|fs.ModeDir, uid, gid)
	}
}

func TestFilesProvision(t *testing.T) {
	ctx := context.Background()
	for _, ds := range dirServiceCases {
		t.Run(ds.name, func(t *testing.T) {
			h := filesHost(t)
			s := lookupService(t, ds.name)
			uid, gid := filesIDs(t, h, ds.name)
			if err := s.Install(ctx, h); err != nil {
				t.Fatal(err)
			}
			checkFilesDir(t, filepath.Join(h.DataDir, ds.sub), 0, 0, 0o755)
			d := Dir(h, ds.name, filesInst)
			want := "directory " + d + " ready"
			for i := 0; i < 2; i++ { // idempotent
				msg, err := s.Provision(ctx, h, filesInst, Credentials{})
				if err != nil || msg != want {
					t.Fatalf("Provision #%d = %q, %v; want %q", i+1, msg, err, want)
				}
				checkFilesDir(t, filepath.Join(h.DataDir, ds.sub, "shop"), 0, 0, 0o755)
				checkFilesDir(t, d, uid, gid, ds.dirMode)
			}

			// A wrong owner and mode are fixed; what is inside (made for the
			// shared app user of earlier versions) becomes the owner's too,
			// its mode untouched.
			inside := filepath.Join(d, "keep.txt")
			if err := os.WriteFile(inside, []byte("kept"), 0o604); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(d, 0, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Provision(ctx, h, filesInst, Credentials{}); err != nil {
				t.Fatal(err)
			}
			checkFilesDir(t, d, uid, gid, ds.dirMode)
			info, err := os.Stat(inside)
			if err != nil || info.Mode().Perm() != 0o604 || int(info.Sys().(*syscall.Stat_t).Uid) != uid || int(info.Sys().(*syscall.Stat_t).Gid) != gid {
				t.Errorf("what is inside after Provision: %v %v, want 0604 owned by %d:%d", info.Mode(), err, uid, gid)
			}
		})
	}
}

func TestFilesProvisionRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		prepare func(t *testing.T, d string) // makes something at the instance's path
		want    string
	}{
		{"a symlink to a directory", func(t *testing.T, d string) {
			if err := os.Symlink(t.TempDir(), d); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
		{"a dangling symlink", func(t *testing.T, d string) {
			if err := os.Symlink("/nonexistent", d); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
		{"a regular file", func(t *testing.T, d string) {
			if err := os.WriteFile(d, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a directory"},
	} {
		for _, ds := range dirServiceCases {
			t.Run(ds.name+"/"+tt.name, func(t *testing.T) {
				h := filesHost(t)
				s := lookupService(t, ds.name)
				d := Dir(h, ds.name, filesInst)
				if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
					t.Fatal(err)
				}
				tt.prepare(t, d)
				target, _ := os.Readlink(d)
				_, err := s.Provision(ctx, h, filesInst, Credentials{})
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), d) {
					t.Fatalf("Provision over %s: %v, want an error naming %s and saying %q", tt.name, err, d, tt.want)
				}
				if target != "" {
					if info, err := os.Stat(target); err == nil && info.Sys().(*syscall.Stat_t).Uid != 0 {
						t.Errorf("the symlink's target was chowned")
					}
				}
				// Nor do the other methods use it.
				if err := s.Backup(ctx, h, filesInst, Credentials{}, io.Discard); err == nil {
					t.Errorf("Backup through %s succeeded", tt.name)
				}
				if err := s.Clear(ctx, h, filesInst, Credentials{}); err == nil {
					t.Errorf("Clear through %s succeeded", tt.name)
				}
			})
		}
	}
	h := filesHost(t)
	if _, err := lookupService(t, "files").Provision(ctx, h, Instance{App: "../x", Name: "main"}, Credentials{}); err == nil {
		t.Errorf("Provision of app ../x succeeded")
	}
	h.AppUser = "root"
	if _, err := lookupService(t, "files").Provision(ctx, h, filesInst, Credentials{}); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("Provision for the app user root: %v", err)
	}
}

// filesTreeEntry is one thing in a directory tree, as a round trip must keep it.
type filesTreeEntry struct {
	Kind   string // "dir", "file", "symlink"
	Mode   os.FileMode
	UID    uint32
	GID    uint32
	Data   string // file contents or symlink target
	Mtime  int64  // seconds
	Setgid bool
}

func (e filesTreeEntry) String() string {
	data := e.Data
	if len(data) > 40 {
		data = fmt.Sprintf("%.40s... (%d bytes)", data, len(data))
	}
	return fmt.Sprintf("%s %v %d:%d setgid=%v mtime=%d %q", e.Kind, e.Mode, e.UID, e.GID, e.Setgid, e.Mtime, data)
}

// readFilesTree lists everything below dir (not dir itself), without following
// symlinks.
func readFilesTree(t *testing.T, dir string) map[string]filesTreeEntry {
	t.Helper()
	tree := map[string]filesTreeEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		e := filesTreeEntry{Mode: info.Mode().Perm(), UID: st.Uid, GID: st.Gid, Setgid: info.Mode()&fs.ModeSetgid != 0, Mtime: info.ModTime().Unix()}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			e.Kind, e.Mode = "symlink", 0
			e.Data, err = os.Readlink(p)
		case info.IsDir():
			e.Kind = "dir"
		case info.Mode().IsRegular():
			e.Kind = "file"
			var b []byte
			b, err = os.ReadFile(p)
			e.Data = string(b)
		default:
			e.Kind = "other"
		}
		rel, _ := filepath.Rel(dir, p)
		tree[rel] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// populateFiles fills d as an app would: files of several modes, nested and
// empty directories, symlinks inside (to a file, to a directory, up and
// back down, dangling), names that need PAX headers.
func populateFiles(t *testing.T, d string, uid, gid int) {
	t.Helper()
	long := strings.Repeat("long-name-", 20) // 200 bytes: beyond USTAR's 100
	mtime := time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)
	type item struct {
		name, kind, data string
		mode             os.FileMode
	}
	items := []item{
		{"a.txt", "file", "hello\n", 0o644},
		{"secret.key", "file", "s3cr3t", 0o600},
		{"run.sh", "file", "#!/bin/sh\n", 0o755},
		{"empty", "file", "", 0o640},
		{"sub", "dir", "", 0o750},
		{"sub/deeper", "dir", "", 0o700},
		{"sub/deeper/b.bin", "file", string(bytes.Repeat([]byte{0, 1, 2, 255}, 3000)), 0o644},
		{"sub/" + long, "file", "long", 0o644},
		{"emptydir", "dir", "", 0o755},
		{"héllo wörld;$x", "file", "unicode", 0o644},
		{"link-to-file", "symlink", "a.txt", 0},
		{"link-to-dir", "symlink", "sub/deeper", 0},
		{"sub/up-and-down", "symlink", "../a.txt", 0},
		{"dangling", "symlink", "does/not/exist", 0},
		{"sub/" + long + ".link", "symlink", long, 0},
	}
	for _, it := range items {
		p := filepath.Join(d, it.name)
		var err error
		switch it.kind {
		case "file":
			err = os.WriteFile(p, []byte(it.data), it.mode)
		case "dir":
			err = os.Mkdir(p, it.mode)
		case "symlink":
			err = os.Symlink(it.data, p)
		}
		if err == nil {
			err = os.Lchown(p, uid, gid)
		}
		if err == nil && it.kind != "symlink" {
			err = os.Chmod(p, it.mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Times last: writing into a directory changes its mtime.
	// Symlinks too (a restore must keep their times, or a backup of the
	// restored tree differs from the first once a second has passed).
	for _, it := range slices.Backward(items) {
		ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(d, it.name), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

func filesBackupOf(t *testing.T, s Service, h Host) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Backup(context.Background(), h, filesInst, Credentials{}, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// noRestoreLeftovers fails when a restore's temporary directories are left beside d.
func noRestoreLeftovers(t *testing.T, d string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(d))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != filepath.Base(d) {
			t.Errorf("left beside %s: %s", d, e.Name())
		}
	}
}

func TestFilesBackupClearRestore(t *testing.T) {
	ctx := context.Background()
	for _, ds := range dirServiceCases {
		t.Run(ds.name, func(t *testing.T) {
			h := filesHost(t)
			s := lookupService(t, ds.name)
			uid, gid := filesIDs(t, h, ds.name)
			if _, err := s.Provision(ctx, h, filesInst, Credentials{}); err != nil {
				t.Fatal(err)
			}
			d := Dir(h, ds.name, filesInst)
			populateFiles(t, d, uid, gid)
			if ds.name == "writable_root" {
				// What the setgid directory does for what the app makes.
				for p, e := range readFilesTree(t, d) {
					if e.Kind == "dir" {
						if err := os.Chmod(filepath.Join(d, p), e.Mode|os.ModeSetgid); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			before := readFilesTree(t, d)
			if len(before) != 15 {
				t.Fatalf("populated %d entries, want 15", len(before))
			}

			archive := filesBackupOf(t, s, h)
			if err := s.CheckBackup(bytes.NewReader(archive)); err != nil {
				t.Fatalf("CheckBackup of a backup: %v", err)
			}
			// Relative paths, nothing else in the archive.
			tr := tar.NewReader(bytes.NewReader(archive))
			var names []string
			for {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, strings.TrimSuffix(hdr.Name, "/"))
				if !filepath.IsLocal(hdr.Name) || hdr.Uname != "" || hdr.Uid != 0 {
					t.Errorf("archive entry %q (uid %d %q)", hdr.Name, hdr.Uid, hdr.Uname)
				}
			}
			if len(names) != len(before) {
				t.Errorf("archive entries %q, want the %d in the directory", names, len(before))
			}

			if err := s.Clear(ctx, h, filesInst, Credentials{}); err != nil {
				t.Fatal(err)
			}
			if tree := readFilesTree(t, d); len(tree) != 0 {
				t.Fatalf("after Clear: %v", tree)
			}
			checkFilesDir(t, d, uid, gid, ds.dirMode)

			// Something that must go when the backup is restored.
			if err := os.WriteFile(filepath.Join(d, "new.txt"), []byte("new"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := s.Restore(ctx, h, filesInst, Credentials{}, bytes.NewReader(archive)); err != nil {
				t.Fatal(err)
			}
			after := readFilesTree(t, d)
			for p, want := range before {
				if got, ok := after[p]; !ok || got != want {
					t.Errorf("%s after the round trip: %v, want %v", p, got, want)
				}
			}
			for p := range after {
				if _, ok := before[p]; !ok {
					t.Errorf("%s after the round trip: not in the backup", p)
				}
			}
			checkFilesDir(t, d, uid, gid, ds.dirMode)
			noRestoreLeftovers(t, d)

			// A backup of the restored directory is the same archive.
			if again := filesBackupOf(t, s, h); !bytes.Equal(again, archive) {
				t.Errorf("backup after restore differs from the first (%d vs %d bytes)", len(again), len(archive))
			}
		})
	}
}

// TestFilesBackupDoesNotFollow: a symlink the app made to something
// outside its directory is backed up as a symlink, never as the target's
// contents; a FIFO is skipped without hanging; Clear removes links, not
// their targets.
func TestFilesBackupDoesNotFollow(t *testing.T) {
	ctx := context.Background()
	h := filesHost(t)
	s := lookupService(t, "files")
	if _, err := s.Provision(ctx, h, filesInst, Credentials{}); err != nil {
		t.Fatal(err)
	}
	d := Dir(h, "files", filesInst)
	outside := t.TempDir()
	secret := filepath.Join(outside, "shadow")
	if err := os.WriteFile(secret, []byte("ROOT-ONLY-SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"to-file": secret, "to-dir": outside} {
		if err := os.Symlink(target, filepath.Join(d, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(d, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	h.Output = &out
	done := make(chan []byte)
	go func() {
		var buf bytes.Buffer
		if err := s.Backup(ctx, h, filesInst, Credentials{}, &buf); err != nil {
			t.Error(err)
		}
		done <- buf.Bytes()
	}()
	var archive []byte
	select {
	case archive = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Backup hangs (on the FIFO?)")
	}
	if bytes.Contains(archive, []byte("ROOT-ONLY-SECRET")) {
		t.Errorf("the backup holds the contents of a symlink's target outside the directory")
	}
	if !strings.Contains(out.String(), "fifo") {
		t.Errorf("Backup did not say it skipped the FIFO: %q", out.String())
	}
	// Absolute links are in the backup as they are, and CheckBackup
	// refuses to restore them.
	if err := s.CheckBackup(bytes.NewReader(archive)); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("CheckBackup of a backup with absolute symlinks: %v", err)
	}
	if err := s.Clear(ctx, h, filesInst, Credentials{}); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(secret); err != nil || string(data) != "ROOT-ONLY-SECRET" {
		t.Errorf("Clear reached through a symlink: %q %v", data, err)
	}
}

func TestFilesDestroy(t *testing.T) {
	ctx := context.Background()
	h := filesHost(t)
	s := lookupService(t, "writable_root")
	other := Instance{App: "shop", Name: "main"}
	for _, inst := range []Instance{filesInst, other} {
		if _, err := s.Provision(ctx, h, inst, Credentials{}); err != nil {
			t.Fatal(err)
		}
	}
	d := Dir(h, "writable_root", filesInst)
	populateFiles(t, d, 0, 0)
	for _, inst := range []Instance{filesInst, other} {
		for i := 0; i < 2; i++ { // again: nothing to do
			if err := s.Destroy(ctx, h, inst, Credentials{}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(Dir(h, "writable_root", inst)); !os.IsNotExist(err) {
				t.Errorf("%s still there: %v", Dir(h, "writable_root", inst), err)
			}
		}
	}
	if _, err := os.Lstat(filepath.Dir(d)); !os.IsNotExist(err) {
		t.Errorf("the app's empty directory is still there: %v", err)
	}
	if info, err := os.Stat(filepath.Join(h.DataDir, "writable-root")); err != nil || !info.IsDir() {
		t.Errorf("Destroy removed the service's directory: %v", err)
	}
}

// filesArchiveEntryDef is one entry of a test archive.
type filesArchiveEntryDef struct {
	name     string
	typ      byte
	data     string
	linkname string
	mode     int64
	size     int64 // when not len(data)
	format   tar.Format
}

func fileEntry(name, data string) filesArchiveEntryDef {
	return filesArchiveEntryDef{name: name, typ: tar.TypeReg, data: data, mode: 0o644}
}
func dirArchiveEntry(name string) filesArchiveEntryDef {
	return filesArchiveEntryDef{name: name, typ: tar.TypeDir, mode: 0o755}
}
func symlinkEntry(name, target string) filesArchiveEntryDef {
	return filesArchiveEntryDef{name: name, typ: tar.TypeSymlink, linkname: target, mode: 0o777}
}

// makeFilesArchive writes the entries with archive/tar (which writes what it
// is given, hostile names included) and its end marker.
func makeFilesArchive(t testing.TB, entries ...filesArchiveEntryDef) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		size := int64(len(e.data))
		if e.size != 0 {
			size = e.size
		}
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.linkname, Mode: e.mode, Size: size, ModTime: time.Unix(1700000000, 0), Format: e.format}
		if e.typ == tar.TypeChar || e.typ == tar.TypeBlock {
			hdr.Devmajor, hdr.Devminor = 1, 3
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("writing %q: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hugeFilesHeader is an archive whose only header claims 1 TiB (and holds none
// of it).
func hugeFilesHeader(t testing.TB) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	tw.Flush() // the header is out; the data never comes
	return buf.Bytes()
}

// patchedFilesArchive writes an archive, lets edit change the raw stream, then fixes
// the header checksums: for what archive/tar refuses to write (NUL in a
// PAX path, type 'S').
func patchedFilesArchive(t testing.TB, edit func(t testing.TB, data []byte), entries ...filesArchiveEntryDef) []byte {
	data := makeFilesArchive(t, entries...)
	edit(t, data)
	// Recompute the checksum of every header block (a block whose magic
	// is ustar), blank as spaces.
	for off := 0; off+512 <= len(data); off += 512 {
		blk := data[off : off+512]
		if !bytes.Equal(blk[257:262], []byte("ustar")) {
			continue
		}
		copy(blk[148:156], "        ")
		sum := 0
		for _, c := range blk {
			sum += int(c)
		}
		copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
	}
	return data
}

// replaceMarker replaces the marker from in the raw stream.
func replaceMarker(from, to string) func(testing.TB, []byte) {
	return func(t testing.TB, data []byte) {
		// Everywhere: in PAX records and in the headers' own name fields.
		found := false
		for i := bytes.Index(data, []byte(from)); i >= 0; i = bytes.Index(data, []byte(from)) {
			copy(data[i:], to)
			found = true
		}
		if !found {
			t.Fatalf("marker %q not in the archive", from)
		}
	}
}

// hostileFilesArchives are archives CheckBackup and Restore must refuse, with
// what the error must say.
func hostileFilesArchives(t testing.TB) []struct {
	name, want string
	data       []byte
} {
	good := fileEntry("ok.txt", "fine")
	valid := makeFilesArchive(t, good, fileEntry("data.bin", strings.Repeat("x", 3000)))
	return []struct {
		name, want string
		data       []byte
	}{
		{"absolute path", `"/etc/cron.d/evil"`, makeFilesArchive(t, good, fileEntry("/etc/cron.d/evil", "x"))},
		{"dot dot", `".." component`, makeFilesArchive(t, good, fileEntry("../../etc/passwd", "x"))},
		{"dot dot inside", `".." component`, makeFilesArchive(t, good, fileEntry("a/../../b", "x"))},
		{"dot dot directory", `".." component`, makeFilesArchive(t, dirArchiveEntry("../up/"))},
		{"not clean", "not clean", makeFilesArchive(t, fileEntry("a//b", "x"))},
		{"absolute symlink", "absolute", makeFilesArchive(t, good, symlinkEntry("etc", "/etc"))},
		{"symlink escape", "leads out", makeFilesArchive(t, good, symlinkEntry("up", "../../etc"))},
		{"symlink escape from a subdirectory", "leads out", makeFilesArchive(t, dirArchiveEntry("a/"), symlinkEntry("a/up", "../../x"))},
		{"symlink escape through another symlink", "leads out", makeFilesArchive(t,
			dirArchiveEntry("d1/"), dirArchiveEntry("d1/d2/"), symlinkEntry("d1/d2/u", "../.."), symlinkEntry("v", "d1/d2/u/../.."))},
		{"symlink loop", "loop", makeFilesArchive(t, symlinkEntry("a", "b"), symlinkEntry("b", "a"))},
		{"entry below a symlink", "below \"link\", a symlink", makeFilesArchive(t, symlinkEntry("link", "sub"), dirArchiveEntry("sub/"), fileEntry("link/x", "x"))},
		{"entry below a file", "below \"f\", a regular file", makeFilesArchive(t, fileEntry("f", "x"), fileEntry("f/x", "x"))},
		{"duplicate", "twice", makeFilesArchive(t, fileEntry("a", "1"), fileEntry("a", "2"))},
		{"file over an implied directory", "not a directory", makeFilesArchive(t, fileEntry("a/b", "1"), fileEntry("a", "2"))},
		{"hard link", "hard link", makeFilesArchive(t, good, filesArchiveEntryDef{name: "hl", typ: tar.TypeLink, linkname: "ok.txt"})},
		{"hard link to outside", "hard link", makeFilesArchive(t, filesArchiveEntryDef{name: "hl", typ: tar.TypeLink, linkname: "/etc/shadow"})},
		{"character device", "device", makeFilesArchive(t, filesArchiveEntryDef{name: "null", typ: tar.TypeChar, mode: 0o666})},
		{"block device", "device", makeFilesArchive(t, filesArchiveEntryDef{name: "sda", typ: tar.TypeBlock, mode: 0o660})},
		{"fifo", "FIFO", makeFilesArchive(t, filesArchiveEntryDef{name: "pipe", typ: tar.TypeFifo, mode: 0o644})},
		{"NUL in a path", "invalid tar header", patchedFilesArchive(t, replaceMarker("evilQname", "evil\x00name"), good, fileEntry("evilQname"+strings.Repeat("n", 120), "x"))},
		{"NUL in a symlink target", "invalid tar header", patchedFilesArchive(t, replaceMarker("tgtQ", "tgt\x00"), symlinkEntry("l", "tgtQ"+strings.Repeat("t", 120)))},
		{"sparse file", "type", patchedFilesArchive(t, func(_ testing.TB, data []byte) { data[156] = tar.TypeGNUSparse }, filesArchiveEntryDef{name: "sparse", typ: '0', data: "x", mode: 0o644, format: tar.FormatGNU})},
		{"huge header size", "claims", hugeFilesHeader(t)},
		{"truncated in a header", "unexpected EOF", valid[:512+512+100]},
		{"truncated in data", `entry "data.bin": unexpected EOF`, valid[:512+512+512+1000]},
		{"truncated between entries", "end-of-archive", valid[:512+512]},
		{"truncated after one end block", "end-of-archive", valid[:len(valid)-512]},
		{"empty stream", "end-of-archive", nil},
		{"garbage", "invalid tar header", bytes.Repeat([]byte("not a tar "), 100)},
	}
}

func TestFilesCheckBackupRefuses(t *testing.T) {
	s := lookupService(t, "files")
	for _, tt := range hostileFilesArchives(t) {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CheckBackup(bytes.NewReader(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckBackup: %v, want an error saying %q", err, tt.want)
			}
			t.Logf("%v", err)
		})
	}
}

func TestFilesCheckBackupAccepts(t *testing.T) {
	s := lookupService(t, "writable_root")
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"empty archive", makeFilesArchive(t)},
		{"GNU tar style ./ names", makeFilesArchive(t, dirArchiveEntry("./"), dirArchiveEntry("./a/"), fileEntry("./a/b", "x"))},
		{"directory after its contents", makeFilesArchive(t, fileEntry("a/b", "x"), dirArchiveEntry("a/"))},
		{"symlinks that stay inside", makeFilesArchive(t, dirArchiveEntry("a/"), dirArchiveEntry("a/b/"), symlinkEntry("a/b/up", "../.."),
			symlinkEntry("via", "a/b/up/a"), symlinkEntry("dangling", "nope/nothing"), symlinkEntry("dot", "."))},
		{"trailing zero blocks beyond the end marker", append(makeFilesArchive(t, fileEntry("a", "x")), make([]byte, 8192)...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CheckBackup(bytes.NewReader(tt.data)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFilesRestoreRefusesAndKeepsOldData: a restore of an archive
// CheckBackup refuses (even one whose bad entry comes after good ones, or
// whose symlinks fail only the final check) changes nothing.
func TestFilesRestoreRefusesAndKeepsOldData(t *testing.T) {
	ctx := context.Background()
	h := filesHost(t)
	s := lookupService(t, "files")
	if _, err := s.Provision(ctx, h, filesInst, Credentials{}); err != nil {
		t.Fatal(err)
	}
	d := Dir(h, "files", filesInst)
	uid, gid := filesIDs(t, h, "files")
	populateFiles(t, d, uid, gid)
	before := readFilesTree(t, d)
	outside := t.TempDir()
	for _, tt := range hostileFilesArchives(t) {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Restore(ctx, h, filesInst, Credentials{}, bytes.NewReader(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Restore: %v, want an error saying %q", err, tt.want)
			}
			after := readFilesTree(t, d)
			if len(after) != len(before) {
				t.Errorf("%d entries after a refused restore, want %d", len(after), len(before))
			}
			for p, want := range before {
				if got := after[p]; got != want {
					t.Errorf("%s after a refused restore: %v, want %v", p, got, want)
				}
			}
			noRestoreLeftovers(t, d)
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("written outside: %v", entries)
			}
		})
	}
	// An archive that is cut short after a good entry, while reading.
	cut := makeFilesArchive(t, fileEntry("new.txt", "new"), fileEntry("big", strings.Repeat("y", 10000)))
	err := s.Restore(ctx, h, filesInst, Credentials{}, io.MultiReader(bytes.NewReader(cut[:4000]), &filesFailingReader{}))
	if err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("Restore from a failing stream: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(d, "new.txt")); !os.IsNotExist(err) {
		t.Errorf("a failed restore left part of the new data: %v", err)
	}
	noRestoreLeftovers(t, d)
	// And a cancelled one.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Restore(cctx, h, filesInst, Credentials{}, bytes.NewReader(cut)); err == nil {
		t.Errorf("a cancelled restore succeeded")
	}
	noRestoreLeftovers(t, d)
	if tree := readFilesTree(t, d); len(tree) != len(before) {
		t.Errorf("after failed restores: %d entries, want %d", len(tree), len(before))
	}
}

type filesFailingReader struct{}

func (*filesFailingReader) Read([]byte) (int, error) { return 0, fmt.Errorf("connection lost") }

// TestFilesRestoreWritesNothingThroughSymlinks: symlinks of the old data
// or of the archive never carry a restore's writes elsewhere.
func TestFilesRestoreWritesNothingThroughSymlinks(t *testing.T) {
	ctx := context.Background()
	h := filesHost(t)
	s := lookupService(t, "files")
	if _, err := s.Provision(ctx, h, filesInst, Credentials{}); err != nil {
		t.Fatal(err)
	}
	d := Dir(h, "files", filesInst)
	outside := t.TempDir()
	// The app left a symlink where the archive has a directory and a file.
	for _, name := range []string{"sub", "f.txt"} {
		if err := os.Symlink(filepath.Join(outside, name), filepath.Join(d, name)); err != nil {
			t.Fatal(err)
		}
	}
	archive := makeFilesArchive(t, dirArchiveEntry("sub/"), fileEntry("sub/x", "x"), fileEntry("f.txt", "f"), symlinkEntry("l", "sub"))
	if err := s.Restore(ctx, h, filesInst, Credentials{}, bytes.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("restore wrote outside the directory: %v", entries)
	}
	tree := readFilesTree(t, d)
	if tree["sub"].Kind != "dir" || tree["sub/x"].Data != "x" || tree["f.txt"].Kind != "file" || tree["l"].Data != "sub" {
		t.Errorf("restored tree: %v", tree)
	}
}
