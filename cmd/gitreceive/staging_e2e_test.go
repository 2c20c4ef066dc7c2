//go:build e2e

package main_test

// Per-branch staging instances on a two-node test bed: own host, own
// releases, own database; allow-list, host collisions, seeding from
// production, run against a staging instance, and removal with the branch.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitreceive/gitreceive/nodes/testbed"
)

func TestStagingBranches(t *testing.T) {
	f, bed := fanOutBed(t, "stg", "10.77.229.0/24", 2)
	const host = "servicesapp.localhost"
	work := exampleWorkTree(t, f.alice, "servicesapp")
	// PostGIS and files only (quicker), and an allow-list for staging.
	replaceIn(t, work, "app.ini", "service.mysql =\nservice.redis =\n", "")
	replaceIn(t, work, "app.ini", "service.writable_root =\n", "")
	if err := os.WriteFile(filepath.Join(work, "app.ini"), append(mustRead(t, filepath.Join(work, "app.ini")), "\n[staging]\nbranches = feature*\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	f.alice.MustGit(t, work, "commit", "-qam", "postgis and files; staging allow-list")
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("servicesapp"))
	f.alice.MustGit(t, work, "push", "silver", "main")
	n1, n2 := bed.Nodes[0], bed.Nodes[1]
	if c := counts(t, n1, host, "/hit"); c.Postgis != 1 || c.Files != 1 {
		t.Fatalf("production: %+v", c)
	}

	// feature/login: its own host (the name made a DNS label), release
	// and database.
	f.alice.MustGit(t, work, "checkout", "-q", "-b", "feature/login")
	f.alice.Commit(t, work, "login", map[string]string{"LOGIN": "1\n"})
	r := f.alice.MustGit(t, work, "push", "silver", "feature/login")
	mustContain(t, r.Stderr, "servicesapp v1 (feature/login) is live on 2 nodes at http://feature-login."+host)
	const staging = "feature-login." + host
	if c := counts(t, n2, staging, "/"); c.Postgis != 0 || c.Files != 0 {
		t.Fatalf("a new staging instance has data: %+v", c)
	}
	if c := counts(t, n2, staging, "/hit"); c.Postgis != 1 {
		t.Fatalf("staging hit: %+v", c)
	}
	if c := counts(t, n1, host, "/hit"); c.Postgis != 2 {
		t.Fatalf("production after staging's hit: %+v", c)
	}
	prodEnv, stagingEnv := envOf(t, n1, host), envOf(t, n1, staging)
	if prodEnv["CONFIG_PG_DBNAME"] == stagingEnv["CONFIG_PG_DBNAME"] || stagingEnv["SILVER_INSTANCE_NAME"] != "servicesapp@feature/login" ||
		prodEnv["SILVER_CANONICAL_HOSTNAME"] != host || stagingEnv["SILVER_CANONICAL_HOSTNAME"] != staging {
		t.Fatalf("production env %v\nstaging env %v", prodEnv, stagingEnv)
	}

	// run APP@BRANCH runs in the staging instance's environment.
	rr := f.alice.SSH(t, "", nil, "run", "servicesapp@feature/login", "show-env")
	if rr.Code != 0 || !strings.Contains(rr.Stdout, "SILVER_INSTANCE_NAME=servicesapp@feature/login\n") ||
		!strings.Contains(rr.Stdout, "CONFIG_PG_DBNAME="+stagingEnv["CONFIG_PG_DBNAME"]+"\n") {
		t.Fatalf("run on staging: %s", rr)
	}

	// feature_login would answer at the same host: refused, naming both.
	f.alice.MustGit(t, work, "checkout", "-q", "-b", "feature_login")
	r = f.alice.Git(t, work, "push", "silver", "feature_login")
	if r.Code == 0 || !strings.Contains(r.Stderr, "branches feature/login and feature_login would both answer at http://feature-login."+host) {
		t.Fatalf("colliding branch: %s", r)
	}
	if out := f.alice.MustGit(t, work, "ls-remote", "silver", "refs/heads/feature_login").Stdout; out != "" {
		t.Fatalf("the refused branch was created: %s", out)
	}

	// A branch outside the allow-list is accepted, not deployed, and says so.
	f.alice.MustGit(t, work, "checkout", "-q", "-b", "experiment")
	r = f.alice.MustGit(t, work, "push", "silver", "experiment")
	mustContain(t, r.Stderr, "servicesapp: branch experiment accepted, not deployed: app.ini's [staging] branches (feature*) does not include it")
	if strings.Contains(r.Stderr, "is live") {
		t.Fatalf("experiment was deployed:\n%s", r.Stderr)
	}

	// A new staging instance seeded from production starts with its data.
	f.alice.MustGit(t, work, "checkout", "-q", "-b", "feature-seeded", "main")
	r = f.alice.MustGit(t, work, "push", "-o", "seed-from=main", "silver", "feature-seeded")
	mustContain(t, r.Stderr, "postgis       seeded from main")
	// Files come from the first node (each node has its own): two hits there.
	if c := counts(t, n2, "feature-seeded."+host, "/"); c.Postgis != 2 || c.Files != 2 {
		t.Fatalf("seeded staging: %+v", c)
	}
	if c := counts(t, n1, "feature-seeded."+host, "/hit"); c.Postgis != 3 {
		t.Fatalf("seeded staging cannot write: %+v", c)
	}
	if c := counts(t, n1, host, "/"); c.Postgis != 2 {
		t.Fatalf("seeding wrote to production: %+v", c)
	}

	apps := f.alice.SSH(t, "", nil, "apps")
	for _, want := range []string{"feature/login", "http://" + staging, "feature-seeded", "by alice"} {
		mustContain(t, apps.Stdout, want)
	}

	// Deleting the branch removes its instance everywhere, with its data;
	// production keeps serving.
	r = f.alice.MustGit(t, work, "push", "silver", ":feature/login")
	mustContain(t, r.Stderr, "servicesapp: branch feature/login deleted: removing instance servicesapp@feature/login (v1 at http://"+staging+"; services: files, postgis) from 2 nodes")
	mustContain(t, r.Stderr, "postgis       data and user removed")
	for _, n := range bed.Nodes {
		if code, _ := get(n, staging, "/"); code != 404 {
			t.Fatalf("%s: the deleted branch's host answers %d", n.Name, code)
		}
		if _, err := os.Stat(filepath.Join(n.Dir, "srv", "gitreceive", "apps", "servicesapp", "branch-feature%2Flogin")); !os.IsNotExist(err) {
			t.Fatalf("%s: the instance's releases are still there (%v)", n.Name, err)
		}
		// Left: production and feature-seeded, one route and one files
		// directory each.
		for _, dir := range []string{"/etc/gitreceive/nginx", "/var/lib/gitreceive/files/servicesapp"} {
			if out := nodeExec(t, bed, n, "ls", "-1", dir); len(strings.Fields(out)) != 2 {
				t.Fatalf("%s: %s holds more than production's and feature-seeded's:\n%s", n.Name, dir, out)
			}
		}
		if c := counts(t, n, host, "/"); c.Postgis != 2 {
			t.Fatalf("%s: production after the branch was deleted: %+v", n.Name, c)
		}
	}
	dbs := nodeExec(t, bed, n1, "runuser", "-u", "postgres", "--", "psql", "-Atc", "SELECT datname FROM pg_database")
	if strings.Contains(dbs, stagingEnv["CONFIG_PG_DBNAME"]) || !strings.Contains(dbs, prodEnv["CONFIG_PG_DBNAME"]) {
		t.Fatalf("databases after the branch was deleted:\n%s", dbs)
	}
	if _, err := os.Stat(filepath.Join(f.data, "services", "servicesapp", "branch-feature%2Flogin.json")); !os.IsNotExist(err) {
		t.Fatalf("the deleted instance's credentials remain: %v", err)
	}
	// The production branch cannot be deleted by a push.
	r = f.alice.Git(t, work, "push", "silver", ":main")
	if r.Code == 0 || !strings.Contains(r.Stderr, "deleting main would take servicesapp's production instance down") {
		t.Fatalf("deleting main: %s", r)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// envOf is servicesapp's /env answer.
func envOf(t *testing.T, n *testbed.Node, host string) map[string]string {
	t.Helper()
	code, body := get(n, host, "/env")
	var env map[string]string
	if code != 200 || json.Unmarshal([]byte(body), &env) != nil {
		t.Fatalf("%s: /env at %s: %d %s", n.Name, host, code, body)
	}
	return env
}

// nodeExec runs args in the node and returns what it printed.
func nodeExec(t *testing.T, bed *testbed.Bed, n *testbed.Node, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := bed.Exec(ctx, n, args...)
	if err != nil {
		t.Fatalf("%s: %v: %v\n%s", n.Name, args, err, out)
	}
	return string(out)
}
