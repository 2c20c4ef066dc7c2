package main_test

// Several teams' apps on one receiver: a deployer must reach nothing of
// another's app. Host names are tied to their apps (APP.DOMAIN and under
// it: APP's alone; any other host: first come, first served), and an
// admin sees and releases claims.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

func TestHostClaims(t *testing.T) {
	f := newFixture(t) // bob deploys myapp
	carolKey := receivertest.NewKey(t, f.keysDir, "carol")
	receivertest.AddKey(t, bin, f.data, carolKey, "--apps", "blog")
	carol := receivertest.NewClient(t, f.srv.Server, carolKey)

	blogIni := func(extra string) map[string]string {
		return map[string]string{"app.ini": "[production]\napp_name = blog\nrunner = app.py\nservice.files =\n" + extra}
	}
	blog := carol.WorkTree(t, receivertest.App("blog", blogIni("")))
	myapp := f.bob.WorkTree(t, receivertest.App("myapp", nil))

	// carol claims myapp's future staging host: refused, naming myapp,
	// before anything is provisioned.
	carol.Commit(t, blog, "squat", blogIni("\n[branch:x]\nlocation = feature.myapp.localhost\n"))
	carol.MustGit(t, blog, "branch", "x")
	r := carol.Git(t, blog, "push", carol.URL("blog"), "x")
	if r.Code == 0 || !strings.Contains(r.Stderr, "app.ini: [branch:x] location: feature.myapp.localhost is under myapp.localhost, which only app myapp may use") {
		t.Fatalf("blog's claim of myapp's staging host: %s", r)
	}
	if strings.Contains(r.Stderr, "-----> Services") {
		t.Fatalf("services were provisioned before the host was refused:\n%s", r.Stderr)
	}
	// So is myapp's own host, in any case.
	carol.Commit(t, blog, "squat", blogIni("default_location = MyApp.localhost\n"))
	if r := carol.Git(t, blog, "push", carol.URL("blog"), "main"); r.Code == 0 || !strings.Contains(r.Stderr, "myapp.localhost is under myapp.localhost, which only app myapp may use") {
		t.Fatalf("blog's claim of myapp.localhost: %s", r)
	}

	// A host under nobody's name: first come, first served.
	carol.Commit(t, blog, "www", blogIni("default_location = www.example.test\n"))
	carol.MustGit(t, blog, "push", carol.URL("blog"), "main")
	f.bob.Commit(t, myapp, "www", map[string]string{"app.ini": "[production]\napp_name = myapp\nrunner = app.py\ndefault_location = www.example.test\n"})
	r = f.bob.Git(t, myapp, "push", f.bob.URL("myapp"), "main")
	if r.Code == 0 || !strings.Contains(r.Stderr, "app.ini: default_location: www.example.test is claimed by app blog") ||
		!strings.Contains(r.Stderr, "hosts:release www.example.test") {
		t.Fatalf("myapp at blog's host: %s", r)
	}
	// myapp's staging branch at its own default host is fine.
	f.bob.MustGit(t, myapp, "branch", "feature")
	f.bob.MustGit(t, myapp, "push", f.bob.URL("myapp"), "feature")

	// Admins see the claims; deployers may not.
	if r := f.bob.SSH(t, "", nil, "hosts"); r.Code == 0 {
		t.Fatalf("a deployer listed the hosts: %s", r)
	}
	hosts := func() map[string]string {
		t.Helper()
		r := f.alice.SSH(t, "", nil, "hosts", "--json")
		var rows []struct {
			Host, App, Instance, Claimed string
			Routed                       bool
		}
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &rows) != nil {
			t.Fatalf("hosts --json: %s", r)
		}
		out := map[string]string{}
		for _, row := range rows {
			out[row.Host] = row.App + "/" + row.Instance
			if row.Routed {
				out[row.Host] += " routed"
			}
		}
		return out
	}
	got := hosts()
	if got["www.example.test"] != "blog/production routed" || got["feature.myapp.localhost"] != "myapp/branch-feature routed" || len(got) != 2 {
		t.Fatalf("hosts: %v", got)
	}
	if r := f.alice.SSH(t, "", nil, "hosts"); r.Code != 0 || !strings.Contains(r.Stdout, "www.example.test") {
		t.Fatalf("hosts: %s", r)
	}

	// A routed host cannot be released; once blog moves, its claim stays
	// until an admin releases it, and then myapp may have it.
	if r := f.alice.SSH(t, "", nil, "hosts:release", "www.example.test"); r.Code == 0 || !strings.Contains(r.Stderr, "www.example.test is served by blog/production") {
		t.Fatalf("release of a routed host: %s", r)
	}
	carol.Commit(t, blog, "move", blogIni("default_location = blog.example.test\n"))
	carol.MustGit(t, blog, "push", carol.URL("blog"), "main")
	if got := hosts(); got["www.example.test"] != "blog/production" || got["blog.example.test"] != "blog/production routed" {
		t.Fatalf("hosts after blog moved: %v", got)
	}
	if r := f.bob.Git(t, myapp, "push", f.bob.URL("myapp"), "main"); r.Code == 0 || !strings.Contains(r.Stderr, "is claimed by app blog") {
		t.Fatalf("myapp at blog's claimed host: %s", r)
	}
	if r := f.bob.SSH(t, "", nil, "hosts:release", "www.example.test"); r.Code == 0 {
		t.Fatalf("a deployer released a host: %s", r)
	}
	if r := f.alice.SSH(t, "", nil, "hosts:release", "www.example.test"); r.Code != 0 || !strings.Contains(r.Stdout, "released www.example.test (claimed by blog/production)") {
		t.Fatalf("release: %s", r)
	}
	f.bob.MustGit(t, myapp, "push", f.bob.URL("myapp"), "main")
	if got := hosts(); got["www.example.test"] != "myapp/production routed" {
		t.Fatalf("hosts after the release: %v", got)
	}
	for _, bad := range []string{"", "a b", "$(id)", "-x"} {
		if r := f.alice.SSH(t, "", nil, "hosts:release", bad); r.Code == 0 {
			t.Errorf("hosts:release %q: %s", bad, r)
		}
	}
}

// Which servers run on the services node is the operator's decision: a
// push asking for a service the receiver's `services` setting leaves out
// is refused before anything is provisioned or installed.
func TestServicesSettingRefusesPush(t *testing.T) {
	f := newFixture(t)
	if err := os.WriteFile(filepath.Join(f.data, "gitreceive.ini"), []byte("services = files, postgis\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.srv.Kill() // settings are read at start
	f.srv.Restart(t)
	ini := func(services string) map[string]string {
		return map[string]string{"app.ini": "[production]\napp_name = myapp\nrunner = app.py\n" + services}
	}
	work := f.bob.WorkTree(t, receivertest.App("myapp", ini("service.files =\nservice.redis =\n")))
	r := f.bob.Git(t, work, "push", f.bob.URL("myapp"), "main")
	if r.Code == 0 || !strings.Contains(r.Stderr, "app.ini: service.redis: this receiver does not provide redis (its operator allows: files, postgis)") {
		t.Fatalf("push asking for redis: %s", r)
	}
	if strings.Contains(r.Stderr, "-----> Services") {
		t.Fatalf("services were provisioned before the refusal:\n%s", r.Stderr)
	}
	f.bob.Commit(t, work, "files only", ini("service.files =\n"))
	f.bob.MustGit(t, work, "push", f.bob.URL("myapp"), "main")
}
