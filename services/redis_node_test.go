//go:build e2e

package services

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// redisClientPy is an app on the node talking to Redis with redis-py, by
// the URL the service hands out. It prints what it saw as JSON; refusals
// are outcomes, not failures.
const redisClientPy = `
import json, sys, redis
a = json.loads(sys.argv[1])
out = {}
def attempt(name, f):
    try:
        out[name] = f()
    except redis.exceptions.NoPermissionError:
        out[name] = "NOPERM"
    except redis.exceptions.AuthenticationError:
        out[name] = "AUTH"
    except redis.exceptions.ResponseError as e:
        out[name] = "ERR " + str(e)
def refusal(e):
    if isinstance(e, redis.exceptions.AuthenticationError) or "WRONGPASS" in str(e) or "NOAUTH" in str(e):
        return "AUTH"
    if isinstance(e, redis.exceptions.ConnectionError):
        return "DOWN"
    return "ERR " + str(e)
def dec(v):
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, (list, tuple, set)):
        return sorted(dec(x) for x in v)
    if isinstance(v, dict):
        return {dec(k): dec(x) for k, x in v.items()}
    return v
r = redis.Redis.from_url(a["url"], socket_timeout=5)
act = a["action"]
try:
    r.ping()
except (redis.exceptions.ResponseError, redis.exceptions.ConnectionError) as e:
    print(json.dumps({"connect": refusal(e)})); sys.exit(0)
out["connect"] = "ok"
if act == "write":
    p = a["prefix"]
    r.set(p + "str", "hello")
    r.set(p + "bin", bytes(range(256)))
    r.incr(p + "counter"); r.incr(p + "counter"); r.incr(p + "counter")
    r.hset(p + "hash", mapping={"a": "1", "b": "2"})
    r.rpush(p + "list", "x", "y", "z")
    r.set(p + "ttl", "soon")
    r.expire(p + "ttl", 3600)
    attempt("keys", lambda: len(r.keys("*")))
    attempt("scan", lambda: len(list(r.scan_iter(count=2))))
elif act == "read":
    p = a["prefix"]
    out["dbsize"] = r.dbsize()
    out["str"] = dec(r.get(p + "str"))
    out["bin_ok"] = r.get(p + "bin") == bytes(range(256))
    out["counter"] = dec(r.get(p + "counter"))
    out["hash"] = dec(r.hgetall(p + "hash"))
    out["list"] = dec(r.lrange(p + "list", 0, -1))
    out["ttl"] = r.ttl(p + "ttl")
elif act == "forbidden":
    attempt("select_other", lambda: r.execute_command("SELECT", a["other_db"]))
    attempt("select_0", lambda: r.execute_command("SELECT", 0))
    attempt("flushall", lambda: r.flushall())
    attempt("config_get", lambda: r.config_get("bind"))
    attempt("swapdb", lambda: r.execute_command("SWAPDB", 0, a["other_db"]))
    attempt("move", lambda: r.execute_command("MOVE", "k", a["other_db"]))
    attempt("copy", lambda: r.execute_command("COPY", "k", "k2", "DB", a["other_db"]))
    attempt("acl_list", lambda: r.execute_command("ACL", "LIST"))
    attempt("eval_select", lambda: r.eval("return redis.call('SELECT', ARGV[1])", 0, a["other_db"]))
    attempt("function_flush", lambda: r.execute_command("FUNCTION", "FLUSH"))
    attempt("shutdown", lambda: r.execute_command("SHUTDOWN"))
    attempt("debug", lambda: r.execute_command("DEBUG", "SLEEP", 0))
    attempt("publish_other", lambda: r.publish(a["other_prefix"] + "news", "x"))
    attempt("publish_own", lambda: r.publish(a["own_prefix"] + "news", "x"))
    attempt("select_own", lambda: dec(r.execute_command("SELECT", a["own_db"])))
    attempt("flushdb", lambda: r.flushdb())
    attempt("dbsize_after_flush", lambda: r.dbsize())
    attempt("info", lambda: "redis_version" in r.info())
    attempt("whoami", lambda: dec(r.execute_command("ACL", "WHOAMI")))
print(json.dumps(out, default=str))
`

type redisSeen struct {
	Connect string            `json:"connect"`
	DBSize  int               `json:"dbsize"`
	Str     *string           `json:"str"`
	BinOK   bool              `json:"bin_ok"`
	Counter *string           `json:"counter"`
	Hash    map[string]string `json:"hash"`
	List    []string          `json:"list"`
	TTL     int               `json:"ttl"`
	Keys    any               `json:"keys"`
	Scan    any               `json:"scan"`
}

func TestRedisOnNode(t *testing.T) {
	n := sharedServicesNode(t)
	n.logsOnFailure("/var/log/redis/redis-server.log", redisACLFile, redisFragmentConf)
	started := time.Now()
	s, _ := Lookup("redis")
	op := func(name string, inst Instance, c Credentials) serviceHelperArgs {
		return serviceHelperArgs{Service: "redis", Op: name, App: inst.App, Instance: inst.Name, Credentials: c}
	}
	instA := Instance{App: "shop", Name: "main"}
	instB := Instance{App: "shop", Name: "feature-x"}
	credsA, credsB := mustCreds(t, instA), mustCreds(t, instB)
	credsA.Database, credsB.Database = 7, 8

	// Install, twice: the second finds everything in place.
	first := n.must(serviceHelperArgs{Service: "redis", Op: "install"})
	second := n.must(serviceHelperArgs{Service: "redis", Op: "install"})
	if second.Out != "" || second.Seconds > 2 {
		t.Errorf("second install was not a quick no-op (%.2fs): %q", second.Seconds, second.Out)
	}
	t.Logf("install %.2fs, again %.2fs", first.Seconds, second.Seconds)
	assertMode(t, n.fs(redisAdminPWFile), 0o600)
	assertMode(t, n.fs(redisACLFile), 0o640)
	if pw := n.mustExec("cat", redisAdminPWFile); !password.MatchString(pw) {
		t.Errorf("admin password file holds %q", pw)
	}
	if !strings.Contains(n.mustExec("cat", redisMainConf), "include "+redisFragmentConf) {
		t.Errorf("%s does not include %s", redisMainConf, redisFragmentConf)
	}

	// A clean slate, should an earlier test (-count) have left A or B:
	// destroying what does not exist is no error.
	n.must(op("destroy", instA, credsA))
	n.must(op("destroy", instB, credsB))

	// Provision A and B; A again (idempotent).
	if res := n.must(op("provision", instA, credsA)); res.Ready != "database 7 for user "+credsA.User+" ready" {
		t.Errorf("provision A said %q", res.Ready)
	}
	n.must(op("provision", instB, credsB))
	n.must(op("provision", instA, credsA))
	// The ACL file as Redis saved it is what Install writes: installing
	// again changes nothing and restarts nothing.
	if res := n.must(serviceHelperArgs{Service: "redis", Op: "install"}); res.Out != "" {
		t.Errorf("install after ACL SAVE: %q", res.Out)
	}
	env := n.must(serviceHelperArgs{Service: "redis", Op: "env", App: instA.App, Instance: instA.Name, Credentials: credsA, Host: n.node.IP}).Env
	urlA := env["CONFIG_REDIS_URL"]
	if want := "redis://" + credsA.User + ":" + credsA.Password + "@" + n.node.IP + ":6379/7"; urlA != want {
		t.Fatalf("CONFIG_REDIS_URL = %q, want %q", urlA, want)
	}
	if got := s.Env(instB, credsB, n.node.IP, Host{})["CONFIG_REDIS_URL"]; !strings.HasSuffix(got, "/8") {
		t.Fatalf("B's URL %q", got)
	}
	urlB := s.Env(instB, credsB, n.node.IP, Host{})["CONFIG_REDIS_URL"]

	client := func(url, action string, extra map[string]any) map[string]any {
		t.Helper()
		arg := map[string]any{"url": url, "action": action, "prefix": "app:"}
		for k, v := range extra {
			arg[k] = v
		}
		var out map[string]any
		n.python(redisClientPy, arg, &out)
		return out
	}
	read := func(url string) redisSeen {
		t.Helper()
		var seen redisSeen
		n.python(redisClientPy, map[string]any{"url": url, "action": "read", "prefix": "app:"}, &seen)
		return seen
	}
	checkData := func(what string, seen redisSeen) {
		t.Helper()
		if seen.Connect != "ok" || seen.DBSize != 6 || seen.Str == nil || *seen.Str != "hello" || !seen.BinOK ||
			seen.Counter == nil || *seen.Counter != "3" || seen.Hash["a"] != "1" || seen.Hash["b"] != "2" ||
			strings.Join(seen.List, ",") != "x,y,z" || seen.TTL < 3000 || seen.TTL > 3600 {
			t.Fatalf("%s: A's data is not what A wrote: %+v", what, seen)
		}
	}

	// A writes over TCP to the node's address, and reads it back.
	if out := client(urlA, "write", nil); out["connect"] != "ok" || out["keys"] != float64(6) || out["scan"] != float64(6) {
		t.Fatalf("A write: %v", out)
	}
	checkData("after write", read(urlA))

	// B sees nothing of A and cannot reach A's database or the server.
	if seen := read(urlB); seen.Connect != "ok" || seen.DBSize != 0 || seen.Str != nil {
		t.Fatalf("B sees %+v", seen)
	}
	forbidden := client(urlB, "forbidden", map[string]any{"other_db": 7, "own_db": 8,
		"other_prefix": redisChannelPrefix(credsA), "own_prefix": redisChannelPrefix(credsB)})
	if forbidden["publish_own"] != float64(0) {
		t.Errorf("B's publish to its own channel: %v", forbidden["publish_own"])
	}
	for _, k := range []string{"select_other", "select_0", "flushall", "config_get", "swapdb", "move", "copy", "acl_list", "function_flush", "shutdown", "publish_other"} {
		if forbidden[k] != "NOPERM" {
			t.Errorf("B's %s: %v, want NOPERM", k, forbidden[k])
		}
	}
	// DEBUG is refused before its ACL check when enable-debug-command is
	// off (the default).
	if v, _ := forbidden["debug"].(string); v != "NOPERM" && !strings.Contains(v, "DEBUG command not allowed") {
		t.Errorf("B's DEBUG: %v", forbidden["debug"])
	}
	if v, _ := forbidden["eval_select"].(string); !strings.Contains(v, "can't run this command") {
		t.Errorf("B's SELECT from a script: %v", forbidden["eval_select"])
	}
	for k, want := range map[string]any{"select_own": true, "flushdb": true, "dbsize_after_flush": float64(0), "info": true, "whoami": credsB.User} {
		if forbidden[k] != want {
			t.Errorf("B's %s: %v, want %v", k, forbidden[k], want)
		}
	}
	checkData("after B's attempts", read(urlA))
	if out := client(urlB, "write", nil); out["connect"] != "ok" {
		t.Fatalf("B write: %v", out)
	}

	// Wrong passwords, and A's password for B's user, are refused.
	wrong := strings.Replace(urlA, credsA.Password, strings.Repeat("0", 32), 1)
	if seen := read(wrong); seen.Connect != "AUTH" {
		t.Errorf("wrong password: %+v", seen)
	}
	if seen := read(strings.Replace(urlB, credsB.Password, credsA.Password, 1)); seen.Connect != "AUTH" {
		t.Errorf("A's password for B: %+v", seen)
	}
	if seen := read("redis://" + n.node.IP + ":6379/7"); seen.Connect == "ok" {
		t.Errorf("no user, no password: %+v", seen)
	}

	// Backup A, clear A (gone), restore A (back).
	n.must(serviceHelperArgs{Service: "redis", Op: "backup", App: instA.App, Instance: instA.Name, Credentials: credsA, Output: "/srv/redis-a.backup"})
	backup, err := os.ReadFile(n.fs("/srv/redis-a.backup"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckBackup(bytes.NewReader(backup)); err != nil {
		t.Fatalf("CheckBackup of a fresh backup: %v", err)
	}
	n.must(op("clear", instA, credsA))
	if seen := read(urlA); seen.Connect != "ok" || seen.DBSize != 0 {
		t.Fatalf("after clear A sees %+v", seen)
	}
	if seen := read(urlB); seen.DBSize != 6 {
		t.Fatalf("clearing A touched B: %+v", seen)
	}
	n.must(serviceHelperArgs{Service: "redis", Op: "restore", App: instA.App, Instance: instA.Name, Credentials: credsA, Input: "/srv/redis-a.backup"})
	checkData("after restore", read(urlA))

	// A damaged backup is refused, by CheckBackup and by Restore, and the
	// data stays.
	for name, bad := range map[string][]byte{
		"truncated": backup[:len(backup)-7],
		"flipped":   flipByte(backup, len(backup)/2),
		"trailing":  append(append([]byte{}, backup...), 'x'),
	} {
		if err := s.CheckBackup(bytes.NewReader(bad)); err == nil {
			t.Errorf("CheckBackup accepted a %s backup", name)
		}
		if err := os.WriteFile(n.fs("/srv/redis-bad.backup"), bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if res := n.helper(serviceHelperArgs{Service: "redis", Op: "restore", App: instA.App, Instance: instA.Name, Credentials: credsA, Input: "/srv/redis-bad.backup"}); res.Error == "" {
			t.Errorf("restore of a %s backup succeeded", name)
		}
	}
	checkData("after refused restores", read(urlA))

	// A well-formed backup from a newer Redis (a newer RDB version) is
	// refused before anything is flushed.
	var recs []redisRecord
	if err := readRedisBackup(bytes.NewReader(backup), func(r redisRecord) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	body := append([]byte{}, recs[len(recs)-1].Payload[:len(recs[len(recs)-1].Payload)-10]...)
	recs[len(recs)-1].Payload = dumpPayloadVersion(body, 99)
	newer := writeRedisBackup(t, recs)
	if err := s.CheckBackup(bytes.NewReader(newer)); err != nil {
		t.Fatalf("CheckBackup of a newer backup: %v", err)
	}
	if err := os.WriteFile(n.fs("/srv/redis-newer.backup"), newer, 0o600); err != nil {
		t.Fatal(err)
	}
	if res := n.helper(serviceHelperArgs{Service: "redis", Op: "restore", App: instA.App, Instance: instA.Name, Credentials: credsA, Input: "/srv/redis-newer.backup"}); !strings.Contains(res.Error, "nothing was changed") {
		t.Errorf("restore of a newer backup: %q", res.Error)
	}
	checkData("after refusing a newer backup", read(urlA))

	// A restart (a reboot of the node: /run is gone) keeps users and data.
	n.mustExec("/etc/init.d/redis-server", "stop")
	n.mustExec("rm", "-rf", redisRunDir)
	if seen := read(urlA); seen.Connect != "DOWN" {
		t.Fatalf("redis still answers after stop: %+v", seen)
	}
	if res := n.must(serviceHelperArgs{Service: "redis", Op: "install"}); !strings.Contains(res.Out, "starting") {
		t.Errorf("install after stop: %q", res.Out)
	}
	checkData("after restart", read(urlA))
	if seen := read(urlB); seen.Connect != "ok" || seen.DBSize != 6 {
		t.Fatalf("B after restart: %+v", seen)
	}

	// Destroy A: user and data gone, B untouched.
	n.must(op("destroy", instA, credsA))
	if seen := read(urlA); seen.Connect != "AUTH" {
		t.Errorf("A after destroy: %+v", seen)
	}
	admin := "REDISCLI_AUTH=" + n.mustExec("cat", redisAdminPWFile)
	if got := n.mustExec("env", admin, "redis-cli", "--user", redisAdminUser, "-n", "7", "DBSIZE"); got != "0" {
		t.Errorf("A's database after destroy has %s keys", got)
	}
	if got := n.mustExec("env", admin, "redis-cli", "--user", redisAdminUser, "ACL", "USERS"); strings.Contains(got, credsA.User) || !strings.Contains(got, credsB.User) {
		t.Errorf("users after destroying A: %q", got)
	}
	if acl := n.mustExec("cat", redisACLFile); strings.Contains(acl, credsA.User) || !strings.Contains(acl, credsB.User) {
		t.Errorf("ACL file after destroying A:\n%s", acl)
	}
	if seen := read(urlB); seen.Connect != "ok" || seen.DBSize != 6 {
		t.Fatalf("B after destroying A: %+v", seen)
	}
	// Destroy again: nothing left to remove is not an error.
	n.must(op("destroy", instA, credsA))
	t.Logf("redis node test: %.2fs", time.Since(started).Seconds())
}

func mustCreds(t *testing.T, inst Instance) Credentials {
	t.Helper()
	c, err := NewCredentials(inst)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if st.Mode().Perm() != want {
		t.Errorf("%s has mode %v, want %v", path, st.Mode().Perm(), want)
	}
}
