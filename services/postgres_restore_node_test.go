//go:build e2e

package services

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Two tenants on one services node: shop (the victim) and blog (the
// attacker, who controls what blog's backups hold). Whatever blog feeds
// to restore, it must stay within blog's own rights.

// twoTenants are shop's and blog's instances called name, with fresh
// credentials.
func twoTenants(t *testing.T, name string) (victim, attacker Instance, vc, ac Credentials) {
	t.Helper()
	victim, attacker = Instance{App: "shop", Name: name}, Instance{App: "blog", Name: name}
	return victim, attacker, mustCreds(t, victim), mustCreds(t, attacker)
}

// pgSuper runs sql as the postgres superuser in db inside the node and
// returns psql's unaligned output.
func (n *svNode) pgSuper(db, sql string) string {
	n.t.Helper()
	out, err := n.exec("runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql)
	if err != nil {
		n.t.Fatalf("psql %s: %v\n%s", db, err, out)
	}
	return strings.TrimSpace(out)
}

// replaceEntry swaps the SQL of the archive entry that starts with start
// (up to its ";\n") for payload, padded with spaces to the same length:
// a custom-format archive records the offsets of its data blocks, so the
// table of contents must keep its size.
func replaceEntry(t *testing.T, archive []byte, start, payload string) []byte {
	t.Helper()
	i := bytes.Index(archive, []byte(start))
	if i < 0 {
		t.Fatalf("the dump has no entry starting %q", start)
	}
	j := bytes.Index(archive[i:], []byte(");\n"))
	if j < 0 {
		t.Fatalf("entry %q does not end", start)
	}
	old := archive[i : i+j+3]
	if len(payload)+1 > len(old) {
		t.Fatalf("payload of %d bytes does not fit the %d-byte entry", len(payload), len(old))
	}
	out := append([]byte{}, archive...)
	repl := payload + strings.Repeat(" ", len(old)-len(payload)-1) + "\n"
	copy(out[i:], repl)
	return out
}

func TestPostgresRestoreBoundedByInstance(t *testing.T) {
	n := sharedServicesNode(t)
	n.logsOnFailure("/var/log/postgresql/postgresql-15-main.log")
	victim, attacker, vc, ac := twoTenants(t, "main")
	op := func(svc, name string, inst Instance, c Credentials) serviceHelperArgs {
		return serviceHelperArgs{Service: svc, Op: name, App: inst.App, Instance: inst.Name, Credentials: c}
	}
	n.must(serviceHelperArgs{Service: "postgis", Op: "install"})
	n.must(op("postgresql", "provision", victim, vc))
	n.must(op("postgis", "provision", attacker, ac))
	n.must(op("postgresql", "clear", victim, vc))
	n.must(op("postgis", "clear", attacker, ac))

	n.pgSuper(vc.User, `SET ROLE "`+vc.User+`"; CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('victim-secret');`)
	// blog's own data, and a table whose long definition leaves room for
	// the payloads below.
	var cols []string
	for i := range 40 {
		cols = append(cols, fmt.Sprintf("column_padding_padding_padding_padding_%02d integer", i))
	}
	n.pgSuper(ac.User, `SET ROLE "`+ac.User+`"; CREATE TABLE notes (v text); INSERT INTO notes VALUES ('one'), ('two');
CREATE TABLE pad (`+strings.Join(cols, ", ")+`);
CREATE TABLE places (name text, at geometry(Point, 4326)); INSERT INTO places VALUES ('here', ST_SetSRID(ST_MakePoint(1, 2), 4326));`)
	n.must(serviceHelperArgs{Service: "postgis", Op: "backup", App: attacker.App, Instance: attacker.Name, Credentials: ac, Output: "/srv/blog.pgdump"})
	dump, err := os.ReadFile(n.fs("/srv/blog.pgdump"))
	if err != nil {
		t.Fatal(err)
	}
	// Written after the backup: still there after a refused restore
	// proves the database was left as it was.
	n.pgSuper(ac.User, `INSERT INTO notes VALUES ('after-backup')`)

	state := func() string {
		return n.pgSuper("postgres", fmt.Sprintf(`SELECT rolsuper::text || ',' || rolcreaterole::text || ',' || rolcreatedb::text FROM pg_roles WHERE rolname = '%s'`, ac.User)) +
			" | " + n.pgSuper(ac.User, `SELECT string_agg(v, ',' ORDER BY v) FROM notes`) +
			" | " + n.pgSuper(ac.User, `SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension`) +
			" | " + n.pgSuper(vc.User, `SELECT string_agg(v, ',') FROM secrets`) +
			" | " + n.pgSuper("postgres", fmt.Sprintf(`SELECT string_agg(datname || ':' || pg_get_userbyid(datdba) || ':' || datallowconn::text, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE '%s%%' OR datname LIKE '%s%%' OR datname = 'stolen'`, ac.User[:8], vc.User[:8]))
	}
	before := state()
	wantBefore := fmt.Sprintf("false,false,false | after-backup,one,two | plpgsql,postgis | victim-secret | %s:%s:true,%s:%s:true",
		ac.User, ac.User, vc.User, vc.User)
	if before != wantBefore {
		t.Fatalf("before the restores: %q, want %q", before, wantBefore)
	}

	quoteA, quoteV := `"`+ac.User+`"`, `"`+vc.User+`"`
	payloads := []struct{ name, entry, sql string }{
		{"SEARCHPATH resets the role to make blog a superuser", "SELECT pg_catalog.set_config('search_path'",
			"RESET ROLE; ALTER ROLE " + quoteA + " SUPERUSER;"},
		{"table entry resets the role to make blog a superuser", "CREATE TABLE public.pad (",
			"RESET ROLE; SET SESSION AUTHORIZATION DEFAULT; ALTER ROLE " + quoteA + " SUPERUSER CREATEROLE CREATEDB; CREATE TABLE public.pad (a int);"},
		{"program run by the server", "CREATE TABLE public.pad (",
			"RESET ROLE; COPY (SELECT 1) TO PROGRAM 'id > /tmp/pwned-by-restore'; CREATE TABLE public.pad (a int);"},
		{"server file read", "CREATE TABLE public.pad (",
			"CREATE TABLE public.pad (a text); COPY public.pad FROM '/etc/shadow';"},
		{"extension blog may not create", "CREATE TABLE public.pad (",
			"CREATE EXTENSION dblink SCHEMA public; CREATE TABLE public.pad (a int);"},
		{"the other tenant's role", "CREATE TABLE public.pad (",
			"SET ROLE " + quoteV + "; CREATE TABLE public.pad (a int);"},
		{"the other tenant's database", "CREATE TABLE public.pad (",
			"ALTER DATABASE " + quoteV + " RENAME TO stolen; CREATE TABLE public.pad (a int);"},
		{"the other tenant's database handed over", "CREATE TABLE public.pad (",
			"ALTER DATABASE " + quoteV + " OWNER TO " + quoteA + "; CREATE TABLE public.pad (a int);"},
	}
	for i, p := range payloads {
		t.Run(p.name, func(t *testing.T) {
			n := &svNode{t: t, bed: n.bed, node: n.node}
			evil := replaceEntry(t, dump, p.entry, p.sql)
			path := fmt.Sprintf("/srv/blog-evil-%d.pgdump", i)
			if err := os.WriteFile(n.fs(path), evil, 0o600); err != nil {
				t.Fatal(err)
			}
			res := n.helper(serviceHelperArgs{Service: "postgis", Op: "restore", App: attacker.App, Instance: attacker.Name, Credentials: ac, Input: path})
			if res.Error == "" {
				t.Fatalf("restore of a dump carrying %q succeeded", p.sql)
			}
			if !strings.Contains(res.Error, "the database is as it was") {
				t.Errorf("the refusal does not say the data was kept: %s", res.Error)
			}
			if strings.Contains(res.Error, ac.Password) {
				t.Error("the refusal shows blog's password")
			}
			if after := state(); after != before {
				t.Errorf("after the restore: %q, was %q", after, before)
			}
			if _, err := os.Stat(n.fs("/tmp/pwned-by-restore")); err == nil {
				t.Error("the restore ran a program on the services node")
			}
		})
	}

	// The dump as it was made restores, owned by blog, PostGIS enabled
	// beforehand by the receiver and its table left to the extension.
	n.must(serviceHelperArgs{Service: "postgis", Op: "restore", App: attacker.App, Instance: attacker.Name, Credentials: ac, Input: "/srv/blog.pgdump"})
	if got := n.pgSuper(ac.User, `SELECT string_agg(v, ',' ORDER BY v) FROM notes`); got != "one,two" {
		t.Errorf("notes after the restore: %q", got)
	}
	if got := n.pgSuper(ac.User, `SELECT name || ' ' || ST_AsText(at) FROM places`); got != "here POINT(1 2)" {
		t.Errorf("places after the restore: %q", got)
	}
	owners := n.pgSuper(ac.User, `SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname IN ('notes', 'pad', 'places')`)
	if owners != ac.User {
		t.Errorf("restored tables are owned by %q, want %q", owners, ac.User)
	}
	if got := n.pgSuper("postgres", fmt.Sprintf(`SELECT count(*) FROM pg_database WHERE datname = '%s'`, pgAsideName(ac))); got != "0" {
		t.Errorf("the database set aside is still there")
	}
	if got := n.pgSuper(vc.User, `SELECT string_agg(v, ',') FROM secrets`); got != "victim-secret" {
		t.Errorf("shop's data after blog's restores: %q", got)
	}

	// A restore killed after it set the database aside: the next one puts
	// it back first (here a refused one, so it is all that happens).
	aside := pgAsideName(ac)
	n.pgSuper("postgres", fmt.Sprintf(`ALTER DATABASE "%s" RENAME TO "%s"`, ac.User, aside))
	if res := n.helper(serviceHelperArgs{Service: "postgis", Op: "restore", App: attacker.App, Instance: attacker.Name, Credentials: ac, Input: "/srv/blog-evil-0.pgdump"}); res.Error == "" {
		t.Fatal("the crafted restore after an interrupted one succeeded")
	}
	if got := n.pgSuper(ac.User, `SELECT string_agg(v, ',' ORDER BY v) FROM notes`); got != "one,two" {
		t.Errorf("notes after mending an interrupted restore: %q", got)
	}
	// One killed while (or just after) it restored into the new database
	// leaves the old one beside it: the old one is what comes back.
	n.pgSuper("postgres", fmt.Sprintf(`ALTER DATABASE "%s" RENAME TO "%s"`, ac.User, aside))
	n.pgSuper("postgres", fmt.Sprintf(`CREATE DATABASE "%s" OWNER "%s"`, ac.User, ac.User))
	if res := n.helper(serviceHelperArgs{Service: "postgis", Op: "restore", App: attacker.App, Instance: attacker.Name, Credentials: ac, Input: "/srv/blog-evil-0.pgdump"}); res.Error == "" {
		t.Fatal("the crafted restore after an interrupted one succeeded")
	}
	if got := n.pgSuper(ac.User, `SELECT string_agg(v, ',' ORDER BY v) FROM notes`); got != "one,two" {
		t.Errorf("notes after mending a restore interrupted after the swap: %q", got)
	}
	// One killed after it finished, before it dropped the old database:
	// the new one stays.
	n.pgSuper("postgres", fmt.Sprintf(`ALTER DATABASE "%s" RENAME TO "%s"`, ac.User, aside))
	n.pgSuper("postgres", fmt.Sprintf(`CREATE DATABASE "%s" OWNER "%s"`, ac.User, ac.User))
	n.pgSuper(ac.User, `SET ROLE "`+ac.User+`"; CREATE TABLE notes (v text); INSERT INTO notes VALUES ('restored');`)
	n.pgSuper("postgres", fmt.Sprintf(`COMMENT ON DATABASE "%s" IS '%s'`, ac.User, pgRestoredMark))
	if res := n.helper(serviceHelperArgs{Service: "postgis", Op: "restore", App: attacker.App, Instance: attacker.Name, Credentials: ac, Input: "/srv/blog-evil-0.pgdump"}); res.Error == "" {
		t.Fatal("the crafted restore after a finished one succeeded")
	}
	if got := n.pgSuper(ac.User, `SELECT string_agg(v, ',' ORDER BY v) FROM notes`); got != "restored" {
		t.Errorf("notes after mending a restore killed after it finished: %q", got)
	}
	// Destroy removes a database set aside too.
	n.pgSuper("postgres", fmt.Sprintf(`CREATE DATABASE "%s" OWNER "%s"`, aside, ac.User))
	n.must(op("postgresql", "destroy", victim, vc))
	n.must(op("postgis", "destroy", attacker, ac))
	if got := n.pgSuper("postgres", fmt.Sprintf(`SELECT count(*) FROM pg_database WHERE datname IN ('%s', '%s', '%s')`, ac.User, aside, vc.User)); got != "0" {
		t.Errorf("%s databases left after destroy", got)
	}
}
