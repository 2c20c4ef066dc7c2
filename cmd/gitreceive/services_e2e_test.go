//go:build e2e

package main_test

// Services end to end: PostGIS, MariaDB and Redis on the services node of
// a two-node test bed, files and writable_root on both app nodes, an app
// using all of them, and backup / clear / restore over SSH.

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/nodes/testbed"
	"github.com/gitreceive/gitreceive/services"
)

// hitCounts is what examples/servicesapp answers: rows, keys and lines it
// finds in each service.
type hitCounts struct {
	Postgis        int    `json:"postgis"`
	PostgisVersion string `json:"postgis_version"`
	Mysql          int    `json:"mysql"`
	Redis          int    `json:"redis"`
	Files          int    `json:"files"`
}

func counts(t *testing.T, n *testbed.Node, host, path string) hitCounts {
	t.Helper()
	code, body := get(n, host, path)
	var c hitCounts
	if code != 200 || json.Unmarshal([]byte(body), &c) != nil {
		t.Fatalf("%s: GET http://%s%s = %d %q", n.Name, host, path, code, body)
	}
	return c
}

func TestServices(t *testing.T) {
	f, bed := fanOutBed(t, "svc", "10.77.227.0/24", 2)
	const host = "servicesapp.localhost"
	work := exampleWorkTree(t, f.alice, "servicesapp")
	f.alice.MustGit(t, work, "remote", "add", "silver", f.alice.URL("servicesapp"))
	var said strings.Builder // everything the pusher and the operator were shown
	r := f.alice.MustGit(t, work, "push", "silver", "main")
	said.WriteString(r.Stderr)
	n1, n2 := bed.Nodes[0], bed.Nodes[1] // svc-1, svc-2 (GITRECEIVE_TESTBED_SLOT renames them)
	for _, want := range []string{
		"remote: -----> Services",
		"remote:        postgis       database servicesapp_production_",
		"remote:        mysql         database servicesapp_production_",
		"remote:        redis         database 1 for user servicesapp_production_",
		"remote:        files         " + n1.Name + "  directory /var/lib/gitreceive/files/servicesapp/servicesapp_production_",
		"remote:        files         " + n2.Name + "  directory ",
		"remote:        writable_root " + n2.Name + "  directory /var/lib/gitreceive/writable-root/servicesapp/",
		"servicesapp v1 (main) is live on 2 nodes",
	} {
		mustContain(t, r.Stderr, want)
	}

	// Each request writes to every service; the databases are shared by
	// the nodes (on svc-1, the services node), files are per node.
	if c := counts(t, n1, host, "/hit"); c != (hitCounts{1, c.PostgisVersion, 1, 1, 1}) || !strings.HasPrefix(c.PostgisVersion, "3") {
		t.Fatalf("first hit: %+v", c)
	}
	if c := counts(t, n2, host, "/hit"); c != (hitCounts{2, c.PostgisVersion, 2, 2, 1}) {
		t.Fatalf("second hit, on the other node: %+v", c)
	}
	env := envOf(t, n2, host)
	for k, v := range map[string]string{"CONFIG_PG_HOST": n1.IP, "CONFIG_PG_PORT": "5432", "CONFIG_MYSQL_HOST": n1.IP, "CONFIG_MYSQL_PORT": "3306",
		"CONFIG_PG_PASSWORD": "***", "DATABASE_URL": "***", "CONFIG_REDIS_URL": "***", "CONFIG_MYSQL_SQLALCHEMY": "***"} {
		if env[k] != v {
			t.Errorf("/env %s = %q, want %q", k, env[k], v)
		}
	}
	if !strings.HasPrefix(env["CONFIG_FILES"], "/var/lib/gitreceive/files/servicesapp/") ||
		!strings.HasPrefix(env["CONFIG_WRITABLE_ROOT"], "/var/lib/gitreceive/writable-root/servicesapp/") {
		t.Errorf("/env: %v", env)
	}
	// nginx serves what the app wrote to its writable root.
	mustGet(t, n1, host, "/hits.txt", n1.Name+"\n")

	// A second deploy keeps every service's data.
	f.alice.Commit(t, work, "v2", map[string]string{"NOTES": "v2\n"})
	r = f.alice.MustGit(t, work, "push", "silver", "main")
	said.WriteString(r.Stderr)
	mustContain(t, r.Stderr, "servicesapp v2 (main) is live on 2 nodes")
	if c := counts(t, n1, host, "/"); c.Postgis != 2 || c.Mysql != 2 || c.Redis != 2 || c.Files != 1 {
		t.Fatalf("after v2: %+v", c)
	}

	// A staging branch is an instance with its own, empty, databases.
	f.alice.MustGit(t, work, "checkout", "-q", "-b", "feature")
	r = f.alice.MustGit(t, work, "push", "silver", "feature")
	said.WriteString(r.Stderr)
	mustContain(t, r.Stderr, "redis         database 2 for user servicesapp_branch_feature_")
	if c := counts(t, n2, "feature."+host, "/hit"); c.Postgis != 1 || c.Mysql != 1 || c.Redis != 1 || c.Files != 1 {
		t.Fatalf("staging's first hit: %+v", c)
	}
	if c := counts(t, n1, host, "/"); c.Postgis != 2 || c.Mysql != 2 || c.Redis != 2 {
		t.Fatalf("production after staging's hit: %+v", c)
	}

	// backup -> clear (gone) -> restore (back).
	b := f.alice.SSH(t, "", nil, "backup", "servicesapp")
	if b.Code != 0 {
		t.Fatalf("backup: %s", b)
	}
	said.WriteString(b.Stderr)
	if names := tarNames(t, b.Stdout); strings.Join(names, " ") != "gitreceive-backup.json files.dump mysql.dump postgis.dump redis.dump writable_root.dump" {
		t.Fatalf("backup holds %v", names)
	}
	for _, svc := range []string{"postgis", "mysql", "redis", "files"} {
		cr := f.alice.SSH(t, "", nil, "clear", "servicesapp", svc, "--confirm", "servicesapp")
		said.WriteString(cr.Stderr)
		if cr.Code != 0 || !strings.Contains(cr.Stderr, svc+" of servicesapp@main is empty") {
			t.Fatalf("clear %s: %s", svc, cr)
		}
	}
	if c := counts(t, n1, host, "/"); c.Postgis != 0 || c.Mysql != 0 || c.Redis != 0 || c.Files != 0 {
		t.Fatalf("after clear: %+v", c)
	}
	// A damaged backup is refused before anything is touched.
	bad := corruptEntry(t, b.Stdout, "postgis.dump")
	br := f.alice.SSH(t, bad, nil, "restore", "servicesapp")
	if br.Code == 0 || !strings.Contains(br.Stderr, "backup entry postgis.dump: not a pg_dump custom-format archive") ||
		!strings.Contains(br.Stderr, "nothing was restored") {
		t.Fatalf("restore of a damaged backup: %s", br)
	}
	if c := counts(t, n1, host, "/"); c.Mysql != 0 || c.Redis != 0 {
		t.Fatalf("a refused restore changed data: %+v", c)
	}
	rr := f.alice.SSH(t, b.Stdout, nil, "restore", "servicesapp")
	said.WriteString(rr.Stderr)
	if rr.Code != 0 {
		t.Fatalf("restore: %s", rr)
	}
	if c := counts(t, n1, host, "/"); c.Postgis != 2 || c.Mysql != 2 || c.Redis != 2 || c.Files != 1 {
		t.Fatalf("after restore: %+v", c)
	}
	if c := counts(t, n1, host, "/hit"); c.Postgis != 3 {
		t.Fatalf("the app cannot write to its restored tables: %+v", c)
	}
	if c := counts(t, n2, "feature."+host, "/"); c.Postgis != 1 || c.Redis != 1 {
		t.Fatalf("staging after production's restore: %+v", c)
	}

	// A service dropped from app.ini is kept, with a warning saying how to
	// remove it; clear then removes it entirely.
	f.alice.MustGit(t, work, "checkout", "-q", "main")
	replaceIn(t, work, "app.ini", "service.redis =\n", "")
	f.alice.MustGit(t, work, "commit", "-qam", "no redis")
	r = f.alice.MustGit(t, work, "push", "silver", "main")
	said.WriteString(r.Stderr)
	mustContain(t, r.Stderr, "warning: redis is no longer in app.ini; its data is kept. To remove it: ssh <receiver> clear servicesapp redis --confirm servicesapp")
	cr := f.alice.SSH(t, "", nil, "clear", "servicesapp", "redis", "--confirm", "servicesapp")
	said.WriteString(cr.Stderr)
	mustContain(t, cr.Stderr, "redis of servicesapp@main is removed")

	logs := f.alice.SSH(t, "", nil, "logs", "servicesapp", "-n", "200")
	said.WriteString(logs.Stdout + logs.Stderr)
	said.WriteString(f.srv.Logs())
	// No password was shown to anyone or logged.
	for _, inst := range []string{"production", "branch-feature"} {
		data, err := os.ReadFile(filepath.Join(f.data, "services", "servicesapp", inst+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var creds map[string]services.Credentials
		if err := json.Unmarshal(data, &creds); err != nil || len(creds) < 4 {
			t.Fatalf("%s credentials: %v %s", inst, err, data)
		}
		for name, c := range creds {
			if strings.Contains(said.String(), c.Password) {
				t.Errorf("the password of %s/%s was shown or logged", inst, name)
			}
		}
	}
	if st, err := os.Stat(filepath.Join(f.data, "services", "servicesapp", "production.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v %v", st.Mode(), err)
	}
}

func tarNames(t *testing.T, archive string) []string {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(archive))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	return names
}

// corruptEntry is archive with the first bytes of entry name overwritten.
func corruptEntry(t *testing.T, archive, name string) string {
	t.Helper()
	return editEntry(t, archive, name, func(data string) string { return "GARBAGE" + data[7:] })
}

// editEntry is archive with entry name's contents passed through edit.
func editEntry(t *testing.T, archive, name string, edit func(string) string) string {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(archive))
	var out strings.Builder
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var body strings.Builder
		if _, err := io.Copy(&body, tr); err != nil {
			t.Fatal(err)
		}
		data := body.String()
		if h.Name == name {
			data = edit(data)
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	tw.Close()
	return out.String()
}
