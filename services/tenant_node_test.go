//go:build e2e

package services

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// Two tenants on one services node, shop and blog, as in
// postgres_restore_node_test.go: blog's crafted backups must not reach
// shop or the server.

// crackListpack makes a DUMP payload of a small hash (RDB type 16, a
// listpack) malformed where only a full check sees it: its first entry
// claims 63 bytes, past the listpack's end. The DUMP trailer is made
// valid again, so the backup's own checks pass.
func crackListpack(t *testing.T, payload []byte) []byte {
	t.Helper()
	const rdbTypeHashListpack = 16
	if payload[0] != rdbTypeHashListpack || payload[1]>>6 != 0 {
		t.Fatalf("payload is not a small hash listpack: % x", payload[:min(len(payload), 16)])
	}
	// type, 6-bit string length, listpack: total bytes (4), count (2),
	// then the first entry's encoding byte.
	p := append([]byte{}, payload...)
	p[8] = 0x80 | 63
	body := p[:len(p)-8]
	binary.LittleEndian.PutUint64(p[len(p)-8:], redisCRC64(body))
	if err := checkDumpPayload(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRedisRestoreRefusesMalformedPayload(t *testing.T) {
	n := sharedServicesNode(t)
	n.logsOnFailure("/var/log/redis/redis-server.log")
	victim, attacker, vc, ac := twoTenants(t, "cache")
	vc.Database, ac.Database = 21, 22
	s, _ := Lookup("redis")
	op := func(name string, inst Instance, c Credentials) serviceHelperArgs {
		return serviceHelperArgs{Service: "redis", Op: name, App: inst.App, Instance: inst.Name, Credentials: c}
	}
	n.must(serviceHelperArgs{Service: "redis", Op: "install"})
	if conf := n.mustExec("cat", redisFragmentConf); !strings.Contains(conf+"\n", "\nsanitize-dump-payload yes\n") {
		t.Fatalf("%s does not sanitize payloads:\n%s", redisFragmentConf, conf)
	}
	n.must(op("provision", victim, vc))
	n.must(op("provision", attacker, ac))
	n.must(op("clear", victim, vc))
	n.must(op("clear", attacker, ac))
	urlV, urlA := s.Env(victim, vc, n.node.IP, Host{})["CONFIG_REDIS_URL"], s.Env(attacker, ac, n.node.IP, Host{})["CONFIG_REDIS_URL"]
	client := func(url, action string) map[string]any {
		t.Helper()
		var out map[string]any
		n.python(redisClientPy, map[string]any{"url": url, "action": action, "prefix": "app:"}, &out)
		return out
	}
	if out := client(urlV, "write"); out["connect"] != "ok" {
		t.Fatalf("shop write: %v", out)
	}
	if out := client(urlA, "write"); out["connect"] != "ok" {
		t.Fatalf("blog write: %v", out)
	}
	var victimBefore, attackerBefore redisSeen
	n.python(redisClientPy, map[string]any{"url": urlV, "action": "read", "prefix": "app:"}, &victimBefore)
	n.python(redisClientPy, map[string]any{"url": urlA, "action": "read", "prefix": "app:"}, &attackerBefore)

	// blog's backup, with its small hash's value cracked.
	n.must(serviceHelperArgs{Service: "redis", Op: "backup", App: attacker.App, Instance: attacker.Name, Credentials: ac, Output: "/srv/blog.redis"})
	data, err := os.ReadFile(n.fs("/srv/blog.redis"))
	if err != nil {
		t.Fatal(err)
	}
	var recs []redisRecord
	if err := readRedisBackup(bytes.NewReader(data), func(r redisRecord) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	var evil bytes.Buffer
	w := newRedisBackupWriter(&evil)
	cracked := false
	for _, r := range recs {
		if string(r.Key) == "app:hash" {
			r.Payload, cracked = crackListpack(t, r.Payload), true
		}
		if err := w.add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if !cracked {
		t.Fatal("blog's backup has no app:hash")
	}
	if err := s.CheckBackup(bytes.NewReader(evil.Bytes())); err != nil {
		t.Fatalf("the crafted backup should pass the format's checks (only the server can see the damage): %v", err)
	}
	if err := os.WriteFile(n.fs("/srv/blog-evil.redis"), evil.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := n.mustExec("pgrep", "-x", "redis-server")
	res := n.helper(serviceHelperArgs{Service: "redis", Op: "restore", App: attacker.App, Instance: attacker.Name, Credentials: ac, Input: "/srv/blog-evil.redis"})
	if res.Error == "" || !strings.Contains(res.Error, `key "app:hash"`) || !strings.Contains(res.Error, "nothing was changed") {
		t.Fatalf("restore of a cracked listpack: error %q, want it refused naming app:hash", res.Error)
	}
	if after := n.mustExec("pgrep", "-x", "redis-server"); after != pid {
		t.Fatalf("redis-server is %q after the restore, was %q", after, pid)
	}
	var victimAfter, attackerAfter redisSeen
	n.python(redisClientPy, map[string]any{"url": urlV, "action": "read", "prefix": "app:"}, &victimAfter)
	n.python(redisClientPy, map[string]any{"url": urlA, "action": "read", "prefix": "app:"}, &attackerAfter)
	if seenJSON(t, victimAfter) != seenJSON(t, victimBefore) || victimAfter.Connect != "ok" || victimAfter.DBSize != 6 {
		t.Errorf("shop's keys after blog's restore: %+v, were %+v", victimAfter, victimBefore)
	}
	if attackerAfter.DBSize != attackerBefore.DBSize || attackerAfter.Connect != "ok" {
		t.Errorf("blog's keys after its refused restore: %+v, were %+v", attackerAfter, attackerBefore)
	}
	// The intact backup still restores.
	n.must(serviceHelperArgs{Service: "redis", Op: "restore", App: attacker.App, Instance: attacker.Name, Credentials: ac, Input: "/srv/blog.redis"})
	n.must(op("destroy", victim, vc))
	n.must(op("destroy", attacker, ac))
}

func seenJSON(t *testing.T, s redisSeen) string {
	t.Helper()
	s.TTL = 0 // counts down between the reads
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The three servers listen on the node's address and loopback only.
func TestServersListenOnlyWhereNodesReach(t *testing.T) {
	n := sharedServicesNode(t)
	for _, svc := range []string{"postgresql", "mysql", "redis"} {
		n.must(serviceHelperArgs{Service: svc, Op: "install"})
	}
	out := n.mustExec("ss", "-ltnH")
	t.Logf("ss -ltnH:\n%s", out)
	for _, port := range []string{"5432", "3306", "6379"} {
		var local []string
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && strings.HasSuffix(f[3], ":"+port) {
				local = append(local, strings.TrimSuffix(f[3], ":"+port))
			}
		}
		for _, a := range local {
			if a != "127.0.0.1" && a != n.node.IP && a != "[::1]" {
				t.Errorf("port %s: listening on %s (all: %v); only 127.0.0.1, [::1] and %s may be", port, a, local, n.node.IP)
			}
		}
		if !strings.Contains(" "+strings.Join(local, " ")+" ", " "+n.node.IP+" ") {
			t.Errorf("port %s: not listening on the node's address %s (all: %v)", port, n.node.IP, local)
		}
	}
}
