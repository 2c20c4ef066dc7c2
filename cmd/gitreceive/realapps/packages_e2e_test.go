//go:build e2e

package realapps

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// testPackage is what the local apt repository offers: a name the
// receiver's default packages_allowed lets a deployer ask for.
const testPackage = "python3-gitreceive-test-hello"

// buildDeb makes a .deb holding /usr/share/NAME/hello.txt with dpkg-deb.
func buildDeb(t *testing.T, dir, name, content string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), name)
	files := map[string]string{
		"DEBIAN/control":                   fmt.Sprintf("Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: gitreceive tests <tests@example.test>\nDescription: a package for gitreceive's tests\n", name),
		"usr/share/" + name + "/hello.txt": content,
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(dir, name+"_1.0_all.deb")
	if out, err := exec.Command("dpkg-deb", "--build", "--root-owner-group", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	return deb
}

// useLocalAptRepo gives every node an apt repository of its own in /srv
// holding the test package, and no other source: nothing reaches the
// network.
func useLocalAptRepo(t *testing.T, bed *testbed.Bed) {
	t.Helper()
	receivertest.RequireTools(t, "dpkg-deb", "dpkg-scanpackages")
	for _, n := range bed.Nodes {
		repo := filepath.Join(n.Dir, "srv", "gitreceive-test-apt")
		if err := os.MkdirAll(repo, 0o755); err != nil {
			t.Fatal(err)
		}
		buildDeb(t, repo, testPackage, "hello from a package on "+n.Name+"\n")
		scan := exec.Command("dpkg-scanpackages", "--multiversion", ".")
		scan.Dir = repo
		index, err := scan.Output()
		if err != nil {
			t.Fatalf("dpkg-scanpackages: %v", err)
		}
		if err := os.WriteFile(filepath.Join(repo, "Packages"), index, 0o644); err != nil {
			t.Fatal(err)
		}
		script := "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && " +
			"echo 'deb [trusted=yes] file:/srv/gitreceive-test-apt ./' > /etc/apt/sources.list.d/gitreceive-test.list"
		if out, err := bed.Exec(t.Context(), n, "sh", "-c", script); err != nil {
			t.Fatalf("%s: %v\n%s", n.Name, err, out)
		}
	}
}

func TestPackagesAreInstalled(t *testing.T) {
	f := receivertest.NewFleet(t, bin, "pk", "10.77.172.0/24", 2)
	useLocalAptRepo(t, f.Bed)
	const host = "hello.example.test"
	app := receivertest.App("hello", map[string]string{
		"app.ini": "[production]\napp_name = hello\nrunner = app.py\ndefault_location = " + host + "\npackages = " + testPackage + "\n",
		"app.py": "def application(environ, start_response):\n    start_response('200 OK', [])\n" +
			"    return [open('/usr/share/" + testPackage + "/hello.txt', 'rb').read()]\n",
	})
	work := f.Alice.WorkTree(t, app)
	f.Alice.MustGit(t, work, "remote", "add", "silver", f.Alice.URL("hello"))
	r := f.Alice.MustGit(t, work, "push", "silver", "main")
	for _, n := range f.Bed.Nodes {
		mustContain(t, r.Stderr, n.Name)
	}
	mustContain(t, r.Stderr, "installed "+testPackage)
	mustContain(t, r.Stderr, "hello v1 (main) is live on 2 nodes")
	for _, n := range f.Bed.Nodes {
		req, _ := http.NewRequest("GET", "http://"+host+"/", nil)
		if got := receivertest.Do(t, n, req); got.Code != 200 || got.Body != "hello from a package on "+n.Name+"\n" {
			t.Errorf("%s: %d %q", n.Name, got.Code, got.Body)
		}
	}

	// A second push installs nothing: the package is there.
	f.Alice.Commit(t, work, "v2", map[string]string{"NOTES": "2\n"})
	r = f.Alice.MustGit(t, work, "push", "silver", "main")
	if strings.Contains(r.Stderr, "installed "+testPackage) {
		t.Errorf("v2 installed the package again:\n%s", r.Stderr)
	}

	// A package that does not exist rejects the push, naming it and a
	// node; nothing switches.
	f.Alice.Commit(t, work, "missing package", map[string]string{
		"app.ini": "[production]\napp_name = hello\nrunner = app.py\ndefault_location = " + host + "\npackages = python3-gitreceive-test-missing\n",
	})
	r = f.Alice.Git(t, work, "push", "silver", "main")
	if r.Code == 0 {
		t.Fatalf("a push asking for a missing package went through:\n%s", r.Stderr)
	}
	mustContain(t, r.Stderr, "python3-gitreceive-test-missing")
	mustContain(t, r.Stderr, f.Bed.Nodes[0].Name)
	for _, n := range f.Bed.Nodes {
		req, _ := http.NewRequest("GET", "http://"+host+"/", nil)
		if got := receivertest.Do(t, n, req); got.Code != 200 || !strings.HasPrefix(got.Body, "hello from a package") {
			t.Errorf("after the rejected push %s answers %d %q", n.Name, got.Code, got.Body)
		}
	}

	// A package outside packages_allowed is refused before any node is asked.
	f.Alice.Commit(t, work, "not allowed", map[string]string{
		"app.ini": "[production]\napp_name = hello\nrunner = app.py\ndefault_location = " + host + "\npackages = openssh-server\n",
	})
	r = f.Alice.Git(t, work, "push", "silver", "main")
	if r.Code == 0 {
		t.Fatalf("a push asking for openssh-server went through:\n%s", r.Stderr)
	}
	mustContain(t, r.Stderr, "packages_allowed")
}
