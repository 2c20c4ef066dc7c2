//go:build e2e

package main_test

// Several teams' apps on one receiver: a deployer must reach nothing of
// another's app. Host names are tied to their apps (APP.DOMAIN and under
// it: APP's alone; any other host: first come, first served), and an
// admin sees and releases claims.

import (
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"hash/crc64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/nodes/testbed"
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

// tenantApp pushes examples/servicesapp as app (PostGIS, Redis and files
// only) with c's key and hits it once per hits.
func tenantApp(t *testing.T, c *receivertest.Client, n *testbed.Node, app string, hits int) {
	t.Helper()
	work := exampleWorkTree(t, c, "servicesapp")
	replaceIn(t, work, "app.ini", "app_name = servicesapp\n", "app_name = "+app+"\n")
	replaceIn(t, work, "app.ini", "service.mysql =\n", "")
	replaceIn(t, work, "app.ini", "service.writable_root =\n", "")
	c.MustGit(t, work, "commit", "-qam", app)
	c.MustGit(t, work, "push", c.URL(app), "main")
	for range hits {
		counts(t, n, app+".localhost", "/hit")
	}
}

// crackedRedisBackup is a redis service backup (services/redisbackup.go's
// format) of one key, a small hash whose listpack's first entry claims 63
// bytes past its end, behind a valid DUMP trailer: well-formed to every
// check but the server's own sanitizing.
func crackedRedisBackup(key string) string {
	body := []byte("\x10\x13\x13\x00\x00\x00\x02\x00\xbfk9Qz\x05\x84v7Xw\x05\xff")
	body = binary.LittleEndian.AppendUint16(body, 10) // RDB version
	table := crc64.MakeTable(0x95ac9329ac4bc9b5)      // Redis' CRC-64 (Jones), no inversion
	payload := binary.LittleEndian.AppendUint64(body, ^crc64.Update(^uint64(0), table, body))
	b := []byte("GRREDIS1\nK")
	b = binary.BigEndian.AppendUint32(b, uint32(len(key)))
	b = append(b, key...)
	b = binary.BigEndian.AppendUint64(b, ^uint64(0)) // PTTL -1
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(append(b, payload...), 'E')
	b = binary.BigEndian.AppendUint64(b, 1)
	return string(binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b)))
}

// Two deployers' apps on one services node: carol (blog) hands restore
// crafted backups; bob's data (myapp), the servers and the roles stay as
// they were. The servers listen on the node's address and loopback only.
func TestTenantServices(t *testing.T) {
	f, bed := fanOutBed(t, "tsv", "10.77.163.0/24", 1)
	n := bed.Nodes[0]
	carolKey := receivertest.NewKey(t, f.keysDir, "carol")
	receivertest.AddKey(t, bin, f.data, carolKey, "--apps", "blog")
	carol := receivertest.NewClient(t, f.srv.Server, carolKey)
	tenantApp(t, f.bob, n, "myapp", 2)
	tenantApp(t, carol, n, "blog", 1)

	listeners := nodeExec(t, bed, n, "ss", "-ltnH")
	for _, line := range strings.Split(listeners, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 4 {
			continue
		}
		addr := fields[3]
		for _, port := range []string{":5432", ":6379"} {
			if strings.HasSuffix(addr, port) && !slices.Contains([]string{"127.0.0.1", "[::1]", n.IP}, strings.TrimSuffix(addr, port)) {
				t.Errorf("a server listens on %s:\n%s", addr, listeners)
			}
		}
	}
	psql := func(sql string) string {
		return strings.TrimSpace(nodeExec(t, bed, n, "runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-d", "postgres", "-c", sql))
	}
	blogRole := psql("SELECT rolname FROM pg_roles WHERE rolname LIKE 'blog_production_%'")
	if blogRole == "" {
		t.Fatal("blog has no role")
	}
	want := func(what string) {
		t.Helper()
		if super := psql("SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolsuper"); super != "postgres" {
			t.Fatalf("%s: superusers %q", what, super)
		}
		if c := counts(t, n, "myapp.localhost", "/"); c.Postgis != 2 || c.Redis != 2 {
			t.Fatalf("%s: myapp's data %+v", what, c)
		}
		if c := counts(t, n, "blog.localhost", "/"); c.Postgis != 1 || c.Redis != 1 {
			t.Fatalf("%s: blog's data %+v", what, c)
		}
	}
	want("before")

	b := carol.SSH(t, "", nil, "backup", "blog")
	if b.Code != 0 {
		t.Fatalf("backup: %s", b)
	}
	// blog's real dump, its table's definition rewritten in place (same
	// length: the archive records offsets) to make blog a superuser.
	evilPG := editEntry(t, b.Stdout, "postgis.dump", func(dump string) string {
		i := strings.Index(dump, "CREATE TABLE public.hits (")
		j := strings.Index(dump[i:], ");\n") + 3
		payload := `RESET ROLE; ALTER ROLE "` + blogRole + `" SUPERUSER;`
		if i < 0 || len(payload) >= j {
			t.Fatalf("no room for the payload in blog's dump")
		}
		return dump[:i] + payload + strings.Repeat(" ", j-len(payload)-1) + "\n" + dump[i+j:]
	})
	r := carol.SSH(t, evilPG, nil, "restore", "blog")
	if r.Code == 0 || !strings.Contains(r.Stderr, "restoring postgis failed") || !strings.Contains(r.Stderr, "must be superuser") ||
		!strings.Contains(r.Stderr, "the database is as it was") {
		t.Fatalf("restore of a dump making blog a superuser: %s", r)
	}
	t.Logf("crafted dump: %s", r.Stderr)
	want("after the crafted dump")

	evilRedis := editEntry(t, b.Stdout, "redis.dump", func(string) string { return crackedRedisBackup("app:hash") })
	pid := nodeExec(t, bed, n, "pgrep", "-x", "redis-server")
	r = carol.SSH(t, evilRedis, nil, "restore", "blog")
	if r.Code == 0 || !strings.Contains(r.Stderr, `redis refuses the value of key "app:hash"`) {
		t.Fatalf("restore of a cracked Redis value: %s", r)
	}
	t.Logf("cracked Redis value: %s", r.Stderr)
	if after := nodeExec(t, bed, n, "pgrep", "-x", "redis-server"); after != pid {
		t.Fatalf("redis-server was %q, is %q", pid, after)
	}
	want("after the cracked Redis value")
	// The backup as it was restores.
	if r := carol.SSH(t, b.Stdout, nil, "restore", "blog"); r.Code != 0 {
		t.Fatalf("restore: %s", r)
	}
	want("after blog's own restore")
}
