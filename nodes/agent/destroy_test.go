package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// destroyFixture lays out what a node holds for APP/INSTANCE (no process
// runs: there is no emperor, the sockets are plain files).
func destroyFixture(t *testing.T, rt Runtime, app, inst string) []string {
	t.Helper()
	dir := rt.instanceDir(app, inst)
	outside := filepath.Join(filepath.Dir(rt.AppsDir), "outside")
	files := []string{
		filepath.Join(dir, "releases", "v1", "app.py"),
		filepath.Join(dir, "releases", "v1.manifest.json"),
		filepath.Join(dir, "releases", "v1.spec.json"),
		filepath.Join(dir, "releases", "v4", "app.py"),
		filepath.Join(dir, "releases", "v4.manifest.json"),
		filepath.Join(dir, "env"),
		filepath.Join(dir, "secret"),
		filepath.Join(dir, "tmp", "sub", "file"),
		filepath.Join(dir, "run", "v4.env"),
		filepath.Join(dir, "run", "v4.wsgi.py"),
		filepath.Join(rt.instanceLogsDir(app, inst), "app.log"),
		rt.instance(app, inst).uwsgiLogPath(),
		filepath.Join(rt.instanceNginxLogsDir(app, inst), "access.log"),
		rt.vassalPath(app, inst, 4),
		rt.vassalPath(app, inst, 7), // a vassal of a release already removed
		rt.socketPath(app, inst, 4),
		rt.socketPath(app, inst, 9),
		filepath.Join(rt.VassalsDir, "."+InstanceID(app, inst)+".v4.ini.tmp-123"),
		filepath.Join(rt.NginxDir, "."+InstanceID(app, inst)+".conf.tmp-456"),
		rt.nginxPath(app, inst),
		filepath.Join(outside, "keep"),
	}
	for _, p := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("# gitreceive-instance: "+app+"/"+inst+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// What an app could plant in its own directories.
	for link, target := range map[string]string{
		filepath.Join(dir, "tmp", "evil-dir"):                     outside,
		filepath.Join(dir, "tmp", "evil-file"):                    filepath.Join(outside, "keep"),
		filepath.Join(dir, "tmp", "sub", "evil-root"):             "/",
		filepath.Join(rt.instanceLogsDir(app, inst), "evil-dir"):  outside,
		filepath.Join(rt.instanceLogsDir(app, inst), "evil-file"): filepath.Join(outside, "keep"),
		filepath.Join(dir, "current"):                             "releases/v4",
		filepath.Join(dir, "previous"):                            "releases/v1",
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	return []string{
		dir, rt.instanceLogsDir(app, inst), rt.instanceNginxLogsDir(app, inst),
		rt.vassalPath(app, inst, 4), rt.vassalPath(app, inst, 7), rt.socketPath(app, inst, 4), rt.socketPath(app, inst, 9),
		filepath.Join(rt.VassalsDir, "."+InstanceID(app, inst)+".v4.ini.tmp-123"),
		filepath.Join(rt.NginxDir, "."+InstanceID(app, inst)+".conf.tmp-456"),
		rt.nginxPath(app, inst),
	}
}

func TestDestroyInstance(t *testing.T) {
	rt := testRuntime(t)
	rt.EmperorStats = filepath.Join(t.TempDir(), "no-emperor.sock")
	log := fakeNginx(t, rt.NginxDir)
	ctx := context.Background()
	// '%' and '.': an instance whose ID is a hash.
	gone := destroyFixture(t, rt, "shop", "feat%41.x")
	kept := destroyFixture(t, rt, "shop", "main")
	kept = append(kept, destroyFixture(t, rt, "blog", "feat%41.x")...)
	outside := filepath.Join(filepath.Dir(rt.AppsDir), "outside")

	if err := rt.instance("shop", "feat%41.x").destroy(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range gone {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is left (%v)", p, err)
		}
	}
	for _, p := range append(kept, filepath.Join(outside, "keep"), outside) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s, not the instance's, is gone: %v", p, err)
		}
	}
	if got := calls(t, log); got != "nginx -t -q\nnginx -s reload\n" {
		t.Errorf("nginx calls:\n%s", got)
	}
	// shop keeps its other instance, hence its directories.
	for _, base := range []string{rt.AppsDir, rt.LogsDir, rt.NginxLogsDir} {
		if _, err := os.Stat(filepath.Join(base, "shop")); err != nil {
			t.Errorf("%s/shop: %v", base, err)
		}
	}

	// Again: nothing to do, no error, no reload.
	resetCalls(t, log)
	if err := rt.instance("shop", "feat%41.x").destroy(ctx); err != nil {
		t.Errorf("second destroy: %v", err)
	}
	if got := calls(t, log); got != "" {
		t.Errorf("second destroy called nginx:\n%s", got)
	}

	// The last instance of an app takes the app's directories with it.
	if err := rt.instance("shop", "main").destroy(ctx); err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{rt.AppsDir, rt.LogsDir, rt.NginxLogsDir} {
		if _, err := os.Lstat(filepath.Join(base, "shop")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s/shop is left (%v)", base, err)
		}
		if _, err := os.Stat(filepath.Join(base, "blog")); err != nil {
			t.Errorf("%s/blog: %v", base, err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || !strings.HasPrefix(string(data), "# gitreceive-instance") {
		t.Errorf("the symlinks' target: %q %v", data, err)
	}

	// An instance that never was.
	if err := rt.instance("nothing", "here").destroy(ctx); err != nil {
		t.Errorf("destroying nothing: %v", err)
	}
	for _, c := range [][2]string{{"../x", "main"}, {"shop", "../main"}, {"shop", ""}, {"Shop", "main"}, {"shop", "a/b"}} {
		if err := rt.instance(c[0], c[1]).destroy(ctx); err == nil || !strings.Contains(err.Error(), "invalid app") {
			t.Errorf("%q/%q: %v", c[0], c[1], err)
		}
	}
}

// When nginx will not take the configuration without the instance's file
// (someone else's broken file), nothing is removed: the file is put back
// and a retry does the whole job.
func TestDestroyInstanceKeepsAllWhenNginxFails(t *testing.T) {
	rt := testRuntime(t)
	rt.EmperorStats = filepath.Join(t.TempDir(), "no-emperor.sock")
	fakeNginx(t, rt.NginxDir)
	paths := destroyFixture(t, rt, "shop", "main")
	broken := filepath.Join(rt.NginxDir, "other.conf")
	if err := os.WriteFile(broken, []byte("BROKEN\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := rt.instance("shop", "main").destroy(context.Background())
	if err == nil || !strings.Contains(err.Error(), "destroying shop/main: unrouting shop/main: nginx rejects the configuration") {
		t.Fatalf("error %v", err)
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	os.Remove(broken)
	if err := rt.instance("shop", "main").destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is left (%v)", p, err)
		}
	}
}
