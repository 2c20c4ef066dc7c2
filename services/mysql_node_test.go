//go:build e2e

package services

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// mysqlClientPy is an app on the node talking to MariaDB with PyMySQL over
// TCP, with what CONFIG_MYSQL_* says. It prints what it saw as JSON;
// refusals (MySQL error numbers) are outcomes, not failures.
const mysqlClientPy = `
import hashlib, json, sys, pymysql
a = json.loads(sys.argv[1])
out = {}
try:
    c = pymysql.connect(host=a["host"], port=int(a["port"]), user=a["user"], password=a["password"],
                        database=a["db"], connect_timeout=5, autocommit=True)
except pymysql.err.MySQLError as e:
    print(json.dumps({"connect": e.args[0]})); sys.exit(0)
out["connect"] = "ok"
cur = c.cursor()
def attempt(name, sql):
    try:
        cur.execute(sql)
        out[name] = [list(r) for r in cur.fetchall()]
    except pymysql.err.MySQLError as e:
        out[name] = e.args[0]
act = a["action"]
if act == "write":
    cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100), data BLOB)")
    cur.execute("CREATE TRIGGER items_upper BEFORE INSERT ON items FOR EACH ROW SET NEW.name = UPPER(NEW.name)")
    cur.execute("CREATE PROCEDURE count_items(OUT n INT) SELECT COUNT(*) INTO n FROM items")
    cur.executemany("INSERT INTO items VALUES (%s, %s, %s)",
                    [(i, "item%d" % i, bytes([0, 255, 10, 13, 92, 39, i % 256])) for i in range(100)])
elif act == "read":
    attempt("count", "SELECT COUNT(*) FROM items")
    try:
        cur.execute("SELECT id, name, data FROM items ORDER BY id")
        h = hashlib.sha256()
        for r in cur.fetchall():
            h.update(repr(r).encode())
        out["digest"] = h.hexdigest()
    except pymysql.err.MySQLError as e:
        out["digest"] = e.args[0]
    attempt("proc", "CALL count_items(@n)")
    attempt("proc_result", "SELECT @n")
    attempt("upper", "SELECT name FROM items WHERE id = 5")
elif act == "peek":
    attempt("databases", "SHOW DATABASES")
    attempt("other_table", "SELECT COUNT(*) FROM ` + "`" + `%s` + "`" + `.items" % a["other"])
    attempt("use_other", "USE ` + "`" + `%s` + "`" + `" % a["other"])
    attempt("create_db", "CREATE DATABASE another_one")
    attempt("grant", "GRANT ALL ON *.* TO CURRENT_USER")
    attempt("users", "SELECT user FROM mysql.user")
print(json.dumps(out, default=str))
`

type mysqlSeen struct {
	Connect    any `json:"connect"`
	Count      any `json:"count"`
	Digest     any `json:"digest"`
	ProcResult any `json:"proc_result"`
	Upper      any `json:"upper"`
	Databases  any `json:"databases"`
	OtherTable any `json:"other_table"`
	UseOther   any `json:"use_other"`
	CreateDB   any `json:"create_db"`
	Grant      any `json:"grant"`
	Users      any `json:"users"`
}

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func jsonEq(a, b any) bool { return jsonString(a) == jsonString(b) }

// MySQL error numbers the test expects.
const (
	erAccessDeniedDB         = 1044 // to a database
	erAccessDenied           = 1045 // login
	erAccessDeniedNoPassword = 1698 // login, for a user that does not exist
	erTableAccessDenied      = 1142
	erNoSuchTable            = 1146
)

func TestMySQLOnNode(t *testing.T) {
	n := sharedServicesNode(t)
	n.logsOnFailure(mysqlConfFile)
	started := time.Now()
	s, _ := Lookup("mysql")
	op := func(name string, inst Instance, c Credentials) serviceHelperArgs {
		return serviceHelperArgs{Service: "mysql", Op: name, App: inst.App, Instance: inst.Name, Credentials: c}
	}
	instA := Instance{App: "shop", Name: "main"}
	instB := Instance{App: "shop", Name: "feature-x"}
	credsA, credsB := mustCreds(t, instA), mustCreds(t, instB)

	// Install, twice: the second finds everything in place.
	first := n.must(serviceHelperArgs{Service: "mysql", Op: "install"})
	second := n.must(serviceHelperArgs{Service: "mysql", Op: "install"})
	if second.Out != "" || second.Seconds > 2 {
		t.Errorf("second install was not a quick no-op (%.2fs): %q", second.Seconds, second.Out)
	}
	t.Logf("install %.2fs, again %.2fs", first.Seconds, second.Seconds)

	// A clean slate, should an earlier test (-count) have left A or B:
	// destroying what does not exist is no error.
	n.must(op("destroy", instA, credsA))
	n.must(op("destroy", instB, credsB))

	// Provision A and B; A again (idempotent).
	if res := n.must(op("provision", instA, credsA)); res.Ready != "database "+credsA.User+" ready" {
		t.Errorf("provision A said %q", res.Ready)
	}
	n.must(op("provision", instB, credsB))
	n.must(op("provision", instA, credsA))
	envA := n.must(serviceHelperArgs{Service: "mysql", Op: "env", App: instA.App, Instance: instA.Name, Credentials: credsA, Host: n.node.IP}).Env
	if want := "mysql://" + credsA.User + ":" + credsA.Password + "@" + n.node.IP + ":3306/" + credsA.User; envA["CONFIG_MYSQL_SQLALCHEMY"] != want {
		t.Fatalf("CONFIG_MYSQL_SQLALCHEMY = %q, want %q", envA["CONFIG_MYSQL_SQLALCHEMY"], want)
	}
	envB := s.Env(instB, credsB, n.node.IP, Host{})

	// client runs the app's side with env (the node's own address, TCP).
	client := func(env map[string]string, action string, extra map[string]any) mysqlSeen {
		t.Helper()
		arg := map[string]any{
			"host": env["CONFIG_MYSQL_HOST"], "port": env["CONFIG_MYSQL_PORT"], "user": env["CONFIG_MYSQL_USER"],
			"password": env["CONFIG_MYSQL_PASSWORD"], "db": env["CONFIG_MYSQL_DBNAME"], "action": action,
		}
		for k, v := range extra {
			arg[k] = v
		}
		var seen mysqlSeen
		n.python(mysqlClientPy, arg, &seen)
		return seen
	}
	with := func(env map[string]string, key, value string) map[string]string {
		c := map[string]string{}
		for k, v := range env {
			c[k] = v
		}
		c[key] = value
		return c
	}
	if seen := client(envA, "write", nil); seen.Connect != "ok" {
		t.Fatalf("A write: %+v", seen)
	}
	want := client(envA, "read", nil)
	if want.Connect != "ok" || !jsonEq(want.Count, [][]any{{100.0}}) || !jsonEq(want.ProcResult, [][]any{{100.0}}) ||
		!jsonEq(want.Upper, [][]any{{"ITEM5"}}) {
		t.Fatalf("A read: %+v", want)
	}
	checkData := func(what string) {
		t.Helper()
		if got := client(envA, "read", nil); jsonString(got) != jsonString(want) {
			t.Fatalf("%s: A sees %+v, want %+v", what, got, want)
		}
	}

	// B sees nothing of A and can do nothing beyond its database.
	peek := client(envB, "peek", map[string]any{"other": credsA.User})
	if peek.Connect != "ok" {
		t.Fatalf("B connect: %+v", peek)
	}
	if dbs := jsonString(peek.Databases); strings.Contains(dbs, credsA.User) || !strings.Contains(dbs, credsB.User) {
		t.Errorf("B's SHOW DATABASES: %s", dbs)
	}
	for name, got := range map[string]any{"A's table": peek.OtherTable, "USE A": peek.UseOther, "CREATE DATABASE": peek.CreateDB, "GRANT": peek.Grant, "mysql.user": peek.Users} {
		if code, ok := got.(float64); !ok || (code != erAccessDeniedDB && code != erTableAccessDenied && code != erAccessDenied) {
			t.Errorf("B's %s: %v, want access denied", name, got)
		}
	}
	if seen := client(envB, "read", nil); seen.Count != float64(erNoSuchTable) {
		t.Errorf("B reads %+v", seen)
	}

	// Wrong passwords, and A's password for B, are refused.
	if seen := client(with(envA, "CONFIG_MYSQL_PASSWORD", strings.Repeat("0", 32)), "read", nil); seen.Connect != float64(erAccessDenied) {
		t.Errorf("wrong password: %+v", seen)
	}
	if seen := client(with(envB, "CONFIG_MYSQL_PASSWORD", credsA.Password), "read", nil); seen.Connect != float64(erAccessDenied) {
		t.Errorf("A's password for B: %+v", seen)
	}
	if seen := client(with(envA, "CONFIG_MYSQL_USER", "root"), "read", nil); seen.Connect != float64(erAccessDenied) {
		t.Errorf("root over TCP with A's password: %+v", seen)
	}

	// Backup A, clear A (gone), restore A (back: rows, trigger, procedure).
	n.must(serviceHelperArgs{Service: "mysql", Op: "backup", App: instA.App, Instance: instA.Name, Credentials: credsA, Output: "/srv/mysql-a.sql"})
	backup, err := os.ReadFile(n.fs("/srv/mysql-a.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckBackup(bytes.NewReader(backup)); err != nil {
		t.Fatalf("CheckBackup of a fresh backup: %v\n%.300s", err, backup)
	}
	if bytes.Contains(backup, []byte("CREATE DATABASE")) || bytes.Contains(backup, []byte("USE `")) {
		t.Errorf("the backup names its database; it should restore into any")
	}
	n.must(op("clear", instA, credsA))
	if seen := client(envA, "read", nil); seen.Connect != "ok" || seen.Count != float64(erNoSuchTable) {
		t.Fatalf("after clear A sees %+v", seen)
	}
	n.must(serviceHelperArgs{Service: "mysql", Op: "restore", App: instA.App, Instance: instA.Name, Credentials: credsA, Input: "/srv/mysql-a.sql"})
	checkData("after restore")

	// A damaged backup is refused, by CheckBackup and by Restore, and the
	// data stays.
	for name, bad := range map[string][]byte{
		"truncated": backup[:len(backup)*2/3],
		"binary":    append(append([]byte{}, backup[:100]...), append([]byte{0}, backup[100:]...)...),
		"not sql":   []byte("GRREDIS1\n"),
	} {
		if err := s.CheckBackup(bytes.NewReader(bad)); err == nil {
			t.Errorf("CheckBackup accepted a %s backup", name)
		}
		if err := os.WriteFile(n.fs("/srv/mysql-bad.sql"), bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if res := n.helper(serviceHelperArgs{Service: "mysql", Op: "restore", App: instA.App, Instance: instA.Name, Credentials: credsA, Input: "/srv/mysql-bad.sql"}); res.Error == "" {
			t.Errorf("restore of a %s backup succeeded", name)
		}
	}
	checkData("after refused restores")

	// A dump that tries to leave its database, or to make the client run
	// a shell or read a file, fails as the instance's user with the
	// client's commands off, and changes nothing outside the database.
	// After the dump's first statement, so that nothing else breaks it.
	headerEnd := bytes.Index(backup, []byte(";\n")) + 2
	otherDB := "`" + credsB.User + "`"
	bTables := func() string {
		return n.mustExec("mariadb", "-N", "-e", "SELECT COUNT(*), COALESCE(SUM(table_rows), 0) FROM information_schema.tables WHERE table_schema = '"+credsB.User+"'")
	}
	bBefore := bTables()
	for name, line := range map[string]string{
		"switch database":        "USE " + otherDB + "; CREATE TABLE planted (x INT);",
		"other database's table": "CREATE TABLE " + otherDB + ".planted (x INT);",
		"grant other database":   "GRANT ALL ON " + otherDB + ".* TO CURRENT_USER;",
		"grant to another user":  "GRANT ALL ON `" + credsA.User + "`.* TO '" + credsB.User + "'@'%';",
		"shell":                  "\\! touch /tmp/escaped-shell",
		"system":                 "system touch /tmp/escaped-system",
		"database":               "CREATE DATABASE escaped_db;",
		"grant":                  "GRANT ALL ON *.* TO CURRENT_USER;",
		"local file":             "CREATE TABLE leak (l TEXT); LOAD DATA LOCAL INFILE '/etc/shadow' INTO TABLE leak;",
	} {
		hostile := append(append(append([]byte{}, backup[:headerEnd]...), line+"\n"...), backup[headerEnd:]...)
		if err := s.CheckBackup(bytes.NewReader(hostile)); err != nil {
			t.Fatalf("%s: CheckBackup: %v", name, err)
		}
		if err := os.WriteFile(n.fs("/srv/mysql-hostile.sql"), hostile, 0o600); err != nil {
			t.Fatal(err)
		}
		if res := n.helper(serviceHelperArgs{Service: "mysql", Op: "restore", App: instA.App, Instance: instA.Name, Credentials: credsA, Input: "/srv/mysql-hostile.sql"}); res.Error == "" {
			t.Errorf("restore of a dump with %q succeeded", line)
		}
	}
	if after := bTables(); after != bBefore {
		t.Errorf("B's database after A's hostile restores: %q, was %q", after, bBefore)
	}
	if out := n.mustExec("mariadb", "-N", "-e", "SHOW GRANTS FOR '"+credsB.User+"'@'%'"); strings.Contains(out, credsA.User) {
		t.Errorf("A's restore granted B its database: %s", out)
	}
	if out := n.mustExec("mariadb", "-N", "-e", "SHOW DATABASES LIKE 'escaped_db'"); out != "" {
		t.Errorf("a restored dump created a database: %q", out)
	}
	for _, p := range []string{"/tmp/escaped-shell", "/tmp/escaped-system"} {
		if _, err := os.Stat(n.fs(p)); err == nil {
			t.Errorf("a restored dump ran a shell command (%s exists)", p)
		}
	}
	// The table may exist (the instance may create tables); it is empty.
	if out, err := n.exec("mariadb", "-N", "-e", "SELECT COUNT(*) FROM `"+credsA.User+"`.leak"); err == nil && strings.TrimSpace(out) != "0" {
		t.Errorf("LOAD DATA LOCAL read /etc/shadow: %s rows", out)
	}
	n.must(serviceHelperArgs{Service: "mysql", Op: "restore", App: instA.App, Instance: instA.Name, Credentials: credsA, Input: "/srv/mysql-a.sql"})
	checkData("after restoring again")

	// A restart (a reboot of the node: /run is gone) keeps users and data.
	n.mustExec("/etc/init.d/mariadb", "stop")
	n.mustExec("rm", "-rf", mysqlRunDir)
	if seen := client(envA, "read", nil); seen.Connect == "ok" {
		t.Fatal("mariadb still answers after stop")
	}
	if res := n.must(serviceHelperArgs{Service: "mysql", Op: "install"}); !strings.Contains(res.Out, "starting") {
		t.Errorf("install after stop: %q", res.Out)
	}
	checkData("after restart")
	if seen := client(envB, "peek", map[string]any{"other": credsA.User}); seen.Connect != "ok" {
		t.Fatalf("B after restart: %+v", seen)
	}

	// Destroy A: user and database gone, B untouched.
	n.must(op("destroy", instA, credsA))
	// An unknown user is refused with 1045 or, depending on the
	// authentication plugin MariaDB pretends it has, 1698.
	if seen := client(envA, "read", nil); seen.Connect != float64(erAccessDenied) && seen.Connect != float64(erAccessDeniedNoPassword) {
		t.Errorf("A after destroy: %+v", seen)
	}
	if out := n.mustExec("mariadb", "-N", "-e", "SHOW DATABASES LIKE '"+credsA.User+"'"); out != "" {
		t.Errorf("A's database after destroy: %q", out)
	}
	if out := n.mustExec("mariadb", "-N", "-e", "SELECT user FROM mysql.user WHERE user LIKE 'shop%' ORDER BY user"); out != credsB.User {
		t.Errorf("users after destroying A: %q", out)
	}
	if seen := client(envB, "peek", map[string]any{"other": credsA.User}); seen.Connect != "ok" {
		t.Fatalf("B after destroying A: %+v", seen)
	}
	n.must(op("destroy", instA, credsA))
	t.Logf("mysql node test: %.2fs", time.Since(started).Seconds())
}
